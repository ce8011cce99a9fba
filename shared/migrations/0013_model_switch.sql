-- Model switches (POST /api/v1/collections/{name}/reembed): the generation a switch is
-- filling, and the job that fills it, until the job ends. All NULL or none.

ALTER TABLE collections
    ADD COLUMN next_physical   text,
    ADD COLUMN next_model      text,
    ADD COLUMN next_dim        integer CHECK (next_dim > 0),
    ADD COLUMN next_job        text,
    ADD COLUMN next_started_at timestamptz,
    ADD CONSTRAINT collections_next_whole CHECK (
        (next_physical IS NULL) = (next_model IS NULL)
        AND (next_physical IS NULL) = (next_dim IS NULL)
        AND (next_physical IS NULL) = (next_job IS NULL)
        AND (next_physical IS NULL) = (next_started_at IS NULL)
    );
