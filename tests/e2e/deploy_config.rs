//! Keeps the deployment files honest without running them: every `IMGIDX__*`
//! variable in docker-compose.yml, deploy/Dockerfile, deploy/systemd/*.service,
//! deploy/k8s/ and the example environment file must load through the real configuration
//! loader; commands must be real `imgidx` subcommands; workers must stay
//! scalable; dependencies must have health checks; the ONNX Runtime pin must
//! agree everywhere; the Grafana dashboard queries only metrics the code registers and
//! Prometheus scrapes the ports the roles listen on. Needs no services. Each checker is also run on a broken
//! copy of the real file, so none can pass by checking nothing.

mod compose;
mod dockerfile;
mod env;
mod k8s;
mod monitoring;
mod repo;
mod systemd;

use env::Var;
use repo::Repo;

fn report(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

fn dockerfile(repo: &Repo) -> dockerfile::Dockerfile {
    let mut problems = Vec::new();
    let df = dockerfile::parse(&repo.read("deploy/Dockerfile"), &mut problems);
    report("deploy/Dockerfile does not parse", problems);
    df
}

fn env_file(repo: &Repo) -> systemd::EnvFile {
    let mut problems = Vec::new();
    let file = systemd::parse_env_file(&repo.read(&format!("{}/{}", systemd::DIR, systemd::ENV_FILE)), &mut problems);
    report("the example environment file does not parse", problems);
    file
}

fn compose_problems(text: &str, repo: &Repo) -> Vec<String> {
    let mut problems = Vec::new();
    compose::check(text, &dockerfile(repo), repo, &mut problems);
    problems
}

fn dockerfile_problems(text: &str, repo: &Repo) -> Vec<String> {
    let mut problems = Vec::new();
    let df = dockerfile::parse(text, &mut problems);
    dockerfile::check(&df, &repo.read(".dockerignore"), repo, &mut problems);
    problems
}

fn unit_problems(name: &str, text: &str, env_text: &str, repo: &Repo) -> Vec<String> {
    let mut problems = Vec::new();
    let file = systemd::parse_env_file(env_text, &mut problems);
    systemd::check_env_file(&file, repo, &mut problems);
    systemd::check_unit(name, text, &file, repo, &mut problems);
    problems
}

/// `text` with `from` replaced by `to`; `from` must be there, or the mutation tests nothing.
fn mutated(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "mutation target {from:?} is not in the file any more");
    text.replacen(from, to, 1)
}

/// Asserts that `problems` holds one mentioning `needle`.
fn assert_caught(problems: &[String], needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem mentioning {needle:?}, got: {problems:#?}"
    );
}

fn k8s_files(repo: &Repo) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(repo.root.join(k8s::DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .map(|n| {
            let text = repo.read(&format!("{}/{n}", k8s::DIR));
            (n, text)
        })
        .collect();
    files.sort();
    files
}

fn k8s_problems(files: &[(String, String)], repo: &Repo) -> Vec<String> {
    let mut problems = Vec::new();
    k8s::check(files, repo, &mut problems);
    problems
}

/// The k8s files with `from` replaced by `to` in `file`.
fn k8s_mutated(files: &[(String, String)], file: &str, from: &str, to: &str) -> Vec<(String, String)> {
    files.iter().map(|(n, t)| (n.clone(), if n == file { mutated(t, from, to) } else { t.clone() })).collect()
}

#[test]
fn k8s_manifests_load_and_scale_on_the_real_queues() {
    let repo = Repo::load();
    report("deploy/k8s", k8s_problems(&k8s_files(&repo), &repo));
}

#[test]
fn k8s_checker_catches_broken_manifests() {
    let repo = Repo::load();
    let files = k8s_files(&repo);
    let cases = [
        ("keda.yaml", "queueName: imgidx.tasks.low", "queueName: imgidx.tasks.bulk", "KEDA watches queues"),
        ("configmap.yaml", "IMGIDX__BROKER__QUEUE_PREFIX: imgidx", "IMGIDX__BROKER__QUEUE_PREFIX: prod", "KEDA watches queues"),
        ("configmap.yaml", "IMGIDX__WORKER__BATCH_SIZE", "IMGIDX__WORKER__BATCHSIZE", "does not load"),
        ("worker.yaml", "args: [\"worker\"]", "args: [\"wrker\"]", "must run `imgidx worker`"),
        ("worker.yaml", "nvidia.com/gpu: 1", "cpu: 8", "asks for no GPU"),
        ("api.yaml", "containerPort: 8000", "containerPort: 8080", "the API listens on"),
        ("api.yaml", "httpGet: {path: /health, port: http}\n            periodSeconds: 10", "httpGet: {path: /, port: http}\n            periodSeconds: 10", "readinessProbe"),
        ("aggregator.yaml", "configMapRef: {name: imgidx-config}", "configMapRef: {name: imgidx-cfg}", "which no manifest defines"),
        ("keda.yaml", "key: IMGIDX__BROKER__URL", "key: BROKER_URL", "not in any Secret"),
        ("kustomization.yaml", "  - keda.yaml\n", "", "does not list keda.yaml"),
    ];
    for (file, from, to, needle) in cases {
        assert_caught(&k8s_problems(&k8s_mutated(&files, file, from, to), &repo), needle);
    }
}

#[test]
fn the_repository_facts_are_found() {
    let repo = Repo::load();
    for role in ["api", "worker", "aggregator", "serve"] {
        assert!(repo.subcommands.iter().any(|s| s == role), "no `{role}` in {:?}", repo.subcommands);
    }
    let pinned = repo::script_ort_version(&repo.read("deploy/install-ort.sh"));
    assert_eq!(pinned.as_deref(), Some(repo.ort_version.as_str()), "deploy/install-ort.sh pins another ORT_VERSION");
}

#[test]
fn docker_compose_loads_and_wires_every_service() {
    let repo = Repo::load();
    report("docker-compose.yml", compose_problems(&repo.read("docker-compose.yml"), &repo));
}

#[test]
fn dockerfile_env_stages_and_context_are_consistent() {
    let repo = Repo::load();
    report("deploy/Dockerfile", dockerfile_problems(&repo.read("deploy/Dockerfile"), &repo));
}

#[test]
fn systemd_units_and_env_file_load() {
    let repo = Repo::load();
    let file = env_file(&repo);
    let mut problems = Vec::new();
    systemd::check_env_file(&file, &repo, &mut problems);
    let dir = repo.root.join(systemd::DIR);
    let mut units: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".service"))
        .collect();
    units.sort();
    for (unit, _) in systemd::UNITS {
        assert!(units.iter().any(|u| u == unit), "{}/{unit} is missing", systemd::DIR);
    }
    for unit in &units {
        let text = repo.read(&format!("{}/{unit}", systemd::DIR));
        systemd::check_unit(unit, &text, &file, &repo, &mut problems);
    }
    report("deploy/systemd", problems);
}

#[test]
fn config_checker_rejects_unknown_keys_bad_values_and_near_misses() {
    let check = |name: &str, value: &str| {
        let mut problems = Vec::new();
        let settings = env::check(&[Var::new("test", name, value)], &mut problems);
        (settings.is_some(), problems)
    };
    let (ok, problems) = check("IMGIDX__WORKER__BATCH_SIZE", "64");
    assert!(ok && problems.is_empty(), "a real key with a good value must pass: {problems:?}");

    let (ok, problems) = check("IMGIDX__WORKER__BATCHSIZE", "64");
    assert!(!ok);
    assert_caught(&problems, "IMGIDX__WORKER__BATCHSIZE");
    let (ok, problems) = check("IMGIDX__NOSUCHSECTION__KEY", "1");
    assert!(!ok);
    assert_caught(&problems, "IMGIDX__NOSUCHSECTION__KEY");
    let (ok, problems) = check("IMGIDX__WORKER__BATCH_SIZE", "lots");
    assert!(!ok);
    assert_caught(&problems, "IMGIDX__WORKER__BATCH_SIZE=\"lots\"");
    let (ok, problems) = check("IMGIDX__MODEL__EXECUTION_PROVIDER", "tpu");
    assert!(!ok);
    assert_caught(&problems, "IMGIDX__MODEL__EXECUTION_PROVIDER");
    let (ok, problems) = check("IMGIDX__WORKER__BATCH_SIZE", "0");
    assert!(!ok);
    assert_caught(&problems, "batch_size");
    // One underscore short: the loader would ignore it without a word.
    let (_, problems) = check("IMGIDX_BROKER__URL", "amqp://x");
    assert_caught(&problems, "lacks the `IMGIDX__` prefix");
}

#[test]
fn compose_interpolation_takes_defaults_and_refuses_the_rest() {
    assert_eq!(compose::interpolate("a${X:-1}b${Y-2}c$$d").unwrap(), "a1b2c$d");
    assert_eq!(compose::interpolate("${A:-${B:-in}}").unwrap(), "in");
    assert!(compose::interpolate("${NEEDED}").is_err());
    assert!(compose::interpolate("${NEEDED:?set it}").is_err());
    assert!(compose::interpolate("$BARE").is_err());
}

#[test]
fn compose_checker_catches_broken_files() {
    let repo = Repo::load();
    let text = repo.read("docker-compose.yml");
    assert_caught(
        &compose_problems(&mutated(&text, "IMGIDX__WORKER__BATCH_SIZE:", "IMGIDX__WORKER__BATCH_SIZ:"), &repo),
        "IMGIDX__WORKER__BATCH_SIZ",
    );
    assert_caught(
        &compose_problems(&mutated(&text, "${WORKER_BATCH_SIZE:-32}", "thirty-two"), &repo),
        "IMGIDX__WORKER__BATCH_SIZE",
    );
    assert_caught(
        &compose_problems(&mutated(&text, "${WORKER_PREFETCH:-64}", "40"), &repo),
        "under twice worker.batch_size",
    );
    assert_caught(
        &compose_problems(&mutated(&text, "command: [\"worker\"]", "command: [\"wroker\"]"), &repo),
        "wroker",
    );
    assert_caught(
        &compose_problems(
            &mutated(&text, "    command: [\"worker\"]\n", "    command: [\"worker\"]\n    container_name: w\n"),
            &repo,
        ),
        "container_name",
    );
    assert_caught(
        &compose_problems(
            &mutated(&text, "    command: [\"worker\"]\n", "    command: [\"worker\"]\n    ports: [\"9000:9000\"]\n"),
            &repo,
        ),
        "`ports`",
    );
    assert_caught(
        &compose_problems(
            &mutated(&text, "      postgres:\n        condition", "      postgrex:\n        condition"),
            &repo,
        ),
        "postgrex",
    );
    assert_caught(
        &compose_problems(
            &mutated(
                &text,
                "      test: [\"CMD\", \"pg_isready\"",
                "      disable: true\n      test: [\"CMD\", \"pg_isready\"",
            ),
            &repo,
        ),
        "no healthcheck",
    );
    assert_caught(&compose_problems(&mutated(&text, "target: cpu", "target: gpu"), &repo), "\"gpu\" is no stage");
    assert_caught(
        &compose_problems(&mutated(&text, "${RABBITMQ_PASSWORD:-imgidx}@", "${RABBITMQ_PASSWORD}@"), &repo),
        "no default",
    );
}

#[test]
fn dockerfile_checker_catches_broken_files() {
    let repo = Repo::load();
    let text = repo.read("deploy/Dockerfile");
    let env_line = "ENV IMGIDX__DATA_DIR=/var/lib/imgidx\n";
    assert_caught(
        &dockerfile_problems(&mutated(&text, env_line, "ENV IMGIDX__DATA_DIRR=/var/lib/imgidx\n"), &repo),
        "IMGIDX__DATA_DIRR",
    );
    assert_caught(
        &dockerfile_problems(
            &mutated(&text, "ENV IMGIDX__MODEL__EXECUTION_PROVIDER=cuda", "ENV IMGIDX__MODEL__EXECUTION_PROVIDER=gpu"),
            &repo,
        ),
        "IMGIDX__MODEL__EXECUTION_PROVIDER",
    );
    assert_caught(&dockerfile_problems(&mutated(&text, "ARG ORT_VERSION=", "ARG ORT_VERSION=9"), &repo), "ORT_VERSION");
    assert_caught(
        &dockerfile_problems(&mutated(&text, "COPY services/worker/Cargo.toml services/worker/\n", ""), &repo),
        "services/worker",
    );
    assert_caught(&dockerfile_problems(&mutated(&text, "USER 10001:10001", "USER root"), &repo), "non-root");
    assert_caught(
        &dockerfile_problems(&mutated(&text, "ENTRYPOINT [\"imgidx\"]", "ENTRYPOINT [\"sh\"]"), &repo),
        "ENTRYPOINT",
    );
    assert_caught(
        &dockerfile_problems(&mutated(&text, "COPY deploy/install-ort.sh", "COPY deploy/no-such-file.sh"), &repo),
        "deploy/no-such-file.sh does not exist",
    );
    assert_caught(
        &dockerfile_problems(&mutated(&text, "COPY shared/ shared/", "COPY scripts/ shared/"), &repo),
        "not allowed into the context",
    );
}

#[test]
fn systemd_checker_catches_broken_files() {
    let repo = Repo::load();
    let env_text = repo.read(&format!("{}/{}", systemd::DIR, systemd::ENV_FILE));
    let worker = repo.read(&format!("{}/imgidx-worker@.service", systemd::DIR));
    let api = repo.read(&format!("{}/imgidx-api.service", systemd::DIR));
    let w = "imgidx-worker@.service";
    assert!(unit_problems(w, &worker, &env_text, &repo).is_empty(), "the real files must pass first");

    let bad_env = mutated(&env_text, "#IMGIDX__WORKER__BATCH_SIZE=32", "#IMGIDX__WORKER__BATCH_SIZ=32");
    assert_caught(&unit_problems(w, &worker, &bad_env, &repo), "IMGIDX__WORKER__BATCH_SIZ");
    let bad_env = mutated(&env_text, "IMGIDX__DATA_DIR=/var/lib/imgidx", "IMGIDX__DATA_DIR=/var/lib/imgidx # state");
    assert_caught(&unit_problems(w, &worker, &bad_env, &repo), "part of it");
    let bad_env = mutated(&env_text, "IMGIDX__API__LISTEN=127.0.0.1:8000", "IMGIDX__WORKER__NAME=one");
    assert_caught(&unit_problems(w, &worker, &bad_env, &repo), "every worker instance");
    let bad_env = mutated(&env_text, "libonnxruntime.so.", "libonnxruntime.so.0.");
    assert_caught(&unit_problems(w, &worker, &bad_env, &repo), "ORT_DYLIB_PATH");

    let bad = mutated(&worker, "Environment=IMGIDX__WORKER__NAME=", "Environment=IMGIDX__WORKER__NAMES=");
    assert_caught(&unit_problems(w, &bad, &env_text, &repo), "IMGIDX__WORKER__NAMES");
    let bad = mutated(&worker, "IMGIDX__WORKER__NAME=%H-worker%i", "IMGIDX__WORKER__NAME=%H-worker");
    assert_caught(&unit_problems(w, &bad, &env_text, &repo), "name each instance");
    let bad = mutated(
        &worker,
        "Environment=IMGIDX__WORKER__NAME=",
        "Environment=IMGIDX__BROKER__URL=amqp://h/%2f\nEnvironment=IMGIDX__WORKER__NAME=",
    );
    assert_caught(&unit_problems(w, &bad, &env_text, &repo), "unknown specifier %2");
    let bad = mutated(&worker, "/usr/local/bin/imgidx worker", "/usr/local/bin/imgidx wrker");
    assert_caught(&unit_problems(w, &bad, &env_text, &repo), "wrker");
    let bad = mutated(&worker, "Restart=on-failure", "Restart=no");
    assert_caught(&unit_problems(w, &bad, &env_text, &repo), "Restart=");
    let a = "imgidx-api.service";
    assert_caught(
        &unit_problems(
            a,
            &mutated(&api, "/usr/local/bin/imgidx api", "/usr/local/bin/imgidx worker"),
            &env_text,
            &repo,
        ),
        "role",
    );
    assert_caught(
        &unit_problems(a, &mutated(&api, "ReadWritePaths=/var/lib/imgidx", "ReadWritePaths=/srv"), &env_text, &repo),
        "ReadWritePaths",
    );
    assert_caught(
        &unit_problems(a, &mutated(&api, "TimeoutStopSec=45s", "TimeoutStopSec=5s"), &env_text, &repo),
        "TimeoutStopSec",
    );
}

fn monitoring_problems(dashboard: &str, prometheus: &str, compose: &str, repo: &Repo) -> Vec<String> {
    let mut problems = Vec::new();
    monitoring::check_dashboard(dashboard, &monitoring::registered(repo), &mut problems);
    monitoring::check_prometheus(prometheus, compose, &mut problems);
    problems
}

#[test]
fn the_dashboard_and_prometheus_match_the_code_and_compose() {
    let repo = Repo::load();
    let (dashboard, prometheus, compose) =
        (repo.read(monitoring::DASHBOARD), repo.read(monitoring::PROMETHEUS), repo.read("docker-compose.yml"));
    assert!(monitoring::registered(&repo).iter().any(|n| n == "imgidx_worker_stage_seconds"), "the registry scan finds nothing");
    report("monitoring files", monitoring_problems(&dashboard, &prometheus, &compose, &repo));

    let typo = mutated(&dashboard, "imgidx_images_indexed_total", "imgidx_images_indexd_total");
    assert_caught(&monitoring_problems(&typo, &prometheus, &compose, &repo), "imgidx_images_indexd_total, which no code registers");
    let port = mutated(&prometheus, "aggregator:9101", "aggregator:9999");
    assert_caught(&monitoring_problems(&dashboard, &port, &compose, &repo), "aggregator:9999");
    let gone = mutated(&compose, "IMGIDX__WORKER__METRICS_LISTEN: 0.0.0.0:9100\n    # SIGTERM", "# SIGTERM");
    assert_caught(&monitoring_problems(&dashboard, &prometheus, &gone, &repo), "worker:9100");
}
