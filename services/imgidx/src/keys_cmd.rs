//! `imgidx keys new`: a fresh API key and the key-file line that accepts it. The key
//! is printed once and never stored; the server keeps only its digest.

use clap::{Subcommand, ValueEnum};

use imgidx_api::keys::{new_key, Scope};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a new random key (line 1) and its `api.api_keys_file` line (line 2).
    New {
        /// Who the key is for; the server logs this name, never the key.
        #[arg(long)]
        name: String,
        /// `read`: status, stats and search only; `write`: also indexing.
        #[arg(long, value_enum, default_value_t = KeyScope::Write)]
        scope: KeyScope,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum KeyScope {
    Read,
    Write,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::New { name, scope } => {
            anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
            let scope = match scope {
                KeyScope::Read => Scope::Read,
                KeyScope::Write => Scope::Write,
            };
            let key = new_key(&name, scope)?;
            println!("{}", key.key);
            println!("{}", key.line);
            eprintln!(
                "the first line is the key: give it to the client (X-API-Key header, or IMGIDX_API_KEY for the CLI); \
                 append the second line to the server's api.api_keys_file"
            );
        }
    }
    Ok(())
}
