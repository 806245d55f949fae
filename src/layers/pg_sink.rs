//! `layers --format postgis`: the connection and the transaction around the
//! domain writer. Opens the database through GDAL's PostgreSQL driver, takes
//! the schema's lock, stages the four tables in a new schema, then publishes
//! them, their comments and their QGIS styles in the same transaction
//! ([`super::postgis`] has the SQL). Every GDAL call of a session happens on
//! the thread that made it; GDAL's own messages are kept off the terminal and
//! redacted before they reach an error.

use gdal::Dataset;
use gdal::spatial_ref::SpatialRef;

use super::ogr::{self, OgrDataset, OgrError, QuietGdal};
use super::postgis::{self, PgTarget};
use super::schema::{Geometry, LayerDef};
use super::writer::{LayerWriter, Target};
use super::{FileLayout, ImageRow, SequenceLine, rtree, styles};
use crate::rows::CellCoverage;
use crate::runrecord::RunEntry;

/// Errors of the PostGIS sink; each names the server and the fix.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgSinkError {
    #[error(
        "cannot connect to PostgreSQL ({target}): {reason}\n  fix: check that the server runs and \
         accepts connections there (`{probe}`), that the database and user exist, and that the \
         password is in PGPASSWORD, ~/.pgpass or the service file"
    )]
    Connect {
        target: String,
        reason: String,
        /// The `pg_isready` command that probes the same server.
        probe: String,
    },
    #[error(
        "PostGIS is not installed in the database ({target}); run `CREATE EXTENSION postgis;` in it \
         as its owner or a superuser, then run again"
    )]
    NoPostgis { target: String },
    #[error(
        "another `mlyexport layers` is writing schema `{schema}` ({target}); wait for it to finish, \
         or write another schema with schema=NAME in --pg"
    )]
    Busy { schema: String, target: String },
    #[error(
        "not written by mlyexport, so left alone: {tables} ({target}); choose another schema with \
         schema=NAME in --pg, or drop or rename them yourself"
    )]
    Foreign { tables: String, target: String },
    #[error(
        "{list} depend on the tables a re-run replaces ({target}); drop them, run again, then \
         create them again (or write another schema with schema=NAME in --pg)"
    )]
    Dependents { list: String, target: String },
    #[error(
        "{list} in schema `{schema}` have names the new tables, their indexes or sequences need \
         ({target}); rename them (ALTER INDEX/SEQUENCE/TABLE/TYPE {schema}.NAME RENAME TO ...) and \
         run again"
    )]
    Clashes {
        list: String,
        schema: String,
        target: String,
    },
    #[error(
        "the database user may not {what} ({target}); an administrator can allow it with {grant}, \
         or write a schema the user may create in with schema=NAME in --pg"
    )]
    Privilege {
        what: String,
        grant: String,
        target: String,
    },
    #[error(
        "other sessions (process ids {pids}) kept the tables of schema `{schema}` open for {minutes} \
         minutes, so the new tables could not replace them; the old tables are unchanged. Run again \
         when those sessions are done, or end them (SELECT pg_terminate_backend(PID)) ({target})"
    )]
    Readers {
        pids: String,
        schema: String,
        minutes: u64,
        target: String,
    },
    #[error("{0}")]
    Writer(String),
    #[error("PostgreSQL refused to {what} ({target}): {reason}")]
    Sql {
        what: String,
        target: String,
        reason: String,
    },
}

/// Where the session writes, for its SQL and messages. The dataset itself is
/// held by the domain writer while the tables are filled.
#[derive(Clone)]
pub(crate) struct PgSession {
    target: PgTarget,
    /// [`PgTarget::describe`], for messages.
    place: String,
    /// PGPASSWORD's value, redacted from every message.
    secrets: Vec<String>,
}

/// libpq's environment, read once at the edge.
fn env(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

impl PgSession {
    /// Connects and checks that PostGIS is there. Call with a [`QuietGdal`]
    /// alive on this thread.
    pub(crate) fn connect(target: &PgTarget) -> Result<(Self, Dataset), PgSinkError> {
        let session = Self {
            target: target.clone(),
            place: target.describe(env),
            secrets: env("PGPASSWORD")
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
        };
        let ds = Dataset::open_ex(
            target.gdal_name(),
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_VECTOR
                    | gdal::GdalOpenFlags::GDAL_OF_UPDATE,
                allowed_drivers: Some(&["PostgreSQL"]),
                ..Default::default()
            },
        )
        .map_err(|e| PgSinkError::Connect {
            target: session.place.clone(),
            reason: session.redact(&connect_reason(e)),
            probe: target.probe(),
        })?;
        let postgis = session.value(
            &ds,
            "SELECT count(*)::text FROM pg_extension WHERE extname = 'postgis'",
            "check for PostGIS",
        )?;
        if postgis.as_deref() != Some("1") {
            return Err(PgSinkError::NoPostgis {
                target: session.place.clone(),
            });
        }
        Ok((session, ds))
    }

    /// Where the connection goes, for messages.
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// Inside the writer's transaction, before its layers: takes the
    /// schema's lock, refuses what would stop the swap ([`Self::preflight`]),
    /// and creates the schema when it is missing.
    pub(crate) fn begin(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let schema = self.target.schema().to_string();
        let taken = self.value(ds, &postgis::lock_sql(&schema), "lock the schema")?;
        if !is_true(taken.as_deref()) {
            return Err(self.busy());
        }
        self.preflight(ds)?;
        let exists = self.rows(
            ds,
            &postgis::schema_comment_sql(&schema),
            "look for the schema",
        )?;
        if exists.is_empty() {
            // Only when missing: CREATE SCHEMA IF NOT EXISTS needs the
            // database's CREATE right even when the schema exists.
            let sql = format!("CREATE SCHEMA {}", postgis::ident(&schema));
            self.exec(ds, &sql, "create the schema")?;
        }
        Ok(())
    }

    /// Creates `layer_styles` when it is missing, and refuses when the user
    /// may not replace rows in it (the styles are written after all the work).
    fn layer_styles(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        // Only when missing: CREATE TABLE IF NOT EXISTS needs the schema's
        // CREATE right even when an administrator made the table for everyone.
        let exists = "SELECT to_regclass('layer_styles') IS NOT NULL";
        let found = || self.value(ds, exists, "look for layer_styles");
        if !is_true(found()?.as_deref()) {
            let created = self.exec(ds, postgis::CREATE_LAYER_STYLES, "create layer_styles");
            // Another run may have created it at the same moment: then it exists.
            match created {
                Err(_) if is_true(found()?.as_deref()) => {}
                other => other?,
            }
        }
        let rights = self.value(
            ds,
            postgis::LAYER_STYLES_RIGHTS,
            "check the rights on layer_styles",
        )?;
        if is_true(rights.as_deref()) {
            return Ok(());
        }
        Err(PgSinkError::Privilege {
            what: "replace its QGIS styles in `layer_styles` (one table for all schemas)".into(),
            grant: "GRANT SELECT, INSERT, DELETE ON layer_styles TO <user>; \
                    GRANT USAGE ON SEQUENCE layer_styles_id_seq TO <user>"
                .into(),
            target: self.place.clone(),
        })
    }

    fn busy(&self) -> PgSinkError {
        PgSinkError::Busy {
            schema: self.target.schema().to_string(),
            target: self.place.clone(),
        }
    }

    /// Refuses what would make the run fail at its end, after all the work:
    /// tables of our names that are not ours, missing rights, views or
    /// foreign keys on our old tables, and names the new indexes need.
    pub(crate) fn preflight(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        self.check_foreign(ds)?;
        self.check_privileges(ds)?;
        self.check_dependents(ds)?;
        self.check_clashes(ds)
    }

    /// Refuses objects that depend on our old tables, their types or
    /// sequences (the swap's `DROP TABLE` would fail on them).
    fn check_dependents(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let schema = self.target.schema();
        let deps = self.rows(
            ds,
            &postgis::dependents_sql(schema),
            "list what depends on the tables",
        )?;
        if !deps.is_empty() {
            let list = deps.into_iter().map(|r| {
                let [what, name, table] = three(r);
                format!("{what} `{name}` (on `{schema}.{table}`)")
            });
            return Err(PgSinkError::Dependents {
                list: list.collect::<Vec<_>>().join(", "),
                target: self.place.clone(),
            });
        }
        Ok(())
    }

    /// Refuses relations and types holding a name the staged or new tables,
    /// their indexes or sequences need (creating them or the swap's
    /// `RENAME` would fail on them).
    fn check_clashes(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let schema = self.target.schema();
        let clashes = self.rows(ds, &postgis::clashes_sql(schema), "look for name clashes")?;
        if !clashes.is_empty() {
            let list = clashes.into_iter().map(|r| {
                let [name, table, _] = three(r);
                match table.as_str() {
                    "" => format!("`{name}`"),
                    t => format!("`{name}` (of table `{t}`)"),
                }
            });
            return Err(PgSinkError::Clashes {
                list: list.collect::<Vec<_>>().join(", "),
                schema: schema.to_string(),
                target: self.place.clone(),
            });
        }
        Ok(())
    }

    /// A missing schema needs the database's CREATE right, an existing one
    /// its own; the old tables must be the user's to drop.
    fn check_privileges(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let schema = self.target.schema();
        let row = self.rows(
            ds,
            &postgis::privileges_sql(schema),
            "check the user's rights",
        )?;
        let [db, on_schema, _] = three(row.into_iter().next().unwrap_or_default());
        let refuse = |what: String, grant: String| PgSinkError::Privilege {
            what,
            grant,
            target: self.place.clone(),
        };
        if on_schema.is_empty() && !is_true(Some(&db)) {
            return Err(refuse(
                format!("create schemas in this database (schema `{schema}` does not exist)"),
                "GRANT CREATE ON DATABASE <database> TO <user>".to_string(),
            ));
        }
        if !on_schema.is_empty() && !is_true(Some(&on_schema)) {
            return Err(refuse(
                format!("create tables in schema `{schema}`"),
                format!("GRANT CREATE ON SCHEMA {schema} TO <user>"),
            ));
        }
        let owned = self.rows(
            ds,
            &postgis::not_owned_sql(schema),
            "check who owns the tables",
        )?;
        if let Some(row) = owned.into_iter().next() {
            let [table, owner, _] = three(row);
            return Err(refuse(
                format!(
                    "drop the old table `{schema}.{table}`, owned by `{owner}`, which a re-run replaces"
                ),
                format!(
                    "ALTER TABLE {schema}.{table} OWNER TO <user> (or GRANT {owner} TO <user>)"
                ),
            ));
        }
        Ok(())
    }

    /// Refuses when a table of ours by name exists without our comment.
    pub(crate) fn check_foreign(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let schema = self.target.schema();
        let rows = self.rows(
            ds,
            &postgis::existing_tables_sql(schema),
            "list the existing tables",
        )?;
        let existing: Vec<(String, Option<String>)> = rows
            .into_iter()
            .map(|mut r| {
                let comment = r.pop().flatten();
                (r.pop().flatten().unwrap_or_default(), comment)
            })
            .collect();
        let foreign = postgis::foreign_tables(&existing);
        if foreign.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = foreign.iter().map(|t| format!("`{schema}.{t}`")).collect();
        Err(PgSinkError::Foreign {
            tables: names.join(", "),
            target: self.place.clone(),
        })
    }

    /// Indexes the staged tables, marks them as ours, gives them the old
    /// tables' rights and team owner, replaces the styles and swaps the
    /// tables in, in the writer's transaction: readers see the new tables
    /// from its commit on. The swap comes last: only it holds the old
    /// tables' locks, and only it runs under the short lock timeout.
    pub(crate) fn publish(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let schema = self.target.schema();
        for sql in postgis::index_sql(schema) {
            self.exec(ds, &sql, "index the geometries")?;
        }
        for (table, description) in postgis::TABLES.iter().zip(DESCRIPTIONS) {
            self.exec(
                ds,
                &postgis::comment_sql(schema, &postgis::staged(table), description),
                "comment a table",
            )?;
        }
        let derived = [
            (
                postgis::grants_sql(schema),
                "grant the old tables' rights on the new ones",
            ),
            (
                postgis::owners_sql(schema),
                "give the new tables the old tables' owner",
            ),
        ];
        for (query, what) in derived {
            let statements = self.rows(ds, &query, what)?;
            for sql in statements
                .into_iter()
                .filter_map(|r| r.into_iter().next().flatten())
            {
                self.exec(ds, &sql, what)?;
            }
        }
        for sql in postgis::styles_sql(schema, &styles::all()) {
            self.exec(ds, &sql, "write the QGIS styles into layer_styles")?;
        }
        self.swap(ds)
    }

    /// Drops the old tables and renames the staged ones. Each try waits at
    /// most [`postgis::SWAP_LOCK_TIMEOUT`] for the old tables' locks (new
    /// readers queue behind it no longer than that); a timed-out try is
    /// rolled back to its savepoint and tried again, for at most
    /// [`READERS_WAIT`]. A stream of short queries lets a try through; a
    /// reader that keeps the tables open for longer fails the run (the old
    /// tables unchanged).
    fn swap(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let start = std::time::Instant::now();
        self.exec(
            ds,
            postgis::SWAP_LOCK_TIMEOUT,
            "bound the wait for the swap",
        )?;
        loop {
            self.exec(ds, "SAVEPOINT mlyexport_swap", "begin the swap")?;
            let sql = postgis::swap_sql(self.target.schema());
            let tried = self.exec(ds, &sql, "replace the old tables");
            match tried {
                Ok(()) => return self.exec(ds, "RELEASE SAVEPOINT mlyexport_swap", "end the swap"),
                Err(e) if !is_lock_timeout(&e) => return Err(e),
                Err(_) => {
                    self.exec(ds, "ROLLBACK TO SAVEPOINT mlyexport_swap", "retry the swap")?;
                }
            }
            if start.elapsed() >= READERS_WAIT {
                let sql = postgis::readers_sql(self.target.schema());
                let pids = self.value(ds, &sql, "look for readers of the old tables")?;
                return Err(PgSinkError::Readers {
                    pids: pids.unwrap_or_else(|| "none left".into()),
                    schema: self.target.schema().to_string(),
                    minutes: READERS_WAIT.as_secs() / 60,
                    target: self.place.clone(),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// `msg` redacted and on one line.
    pub(crate) fn redact(&self, msg: &str) -> String {
        clean(&postgis::redact(msg, &strs(&self.secrets)))
    }

    fn sql_error(&self, what: &str, reason: String) -> PgSinkError {
        PgSinkError::Sql {
            what: what.to_string(),
            target: self.place.clone(),
            reason: self.redact(&reason),
        }
    }

    /// Runs a statement that returns no rows.
    fn exec(&self, ds: &Dataset, sql: &str, what: &str) -> Result<(), PgSinkError> {
        ogr::exec(ds, sql).map_err(|e| self.sql_error(what, gdal_reason(e)))
    }

    /// Rows of a query, each as its columns' strings.
    fn rows(
        &self,
        ds: &Dataset,
        sql: &str,
        what: &str,
    ) -> Result<Vec<Vec<Option<String>>>, PgSinkError> {
        ogr::query(ds, sql).map_err(|e| self.sql_error(what, gdal_reason(e)))
    }

    /// The first column of the first row of a query.
    fn value(&self, ds: &Dataset, sql: &str, what: &str) -> Result<Option<String>, PgSinkError> {
        Ok(self
            .rows(ds, sql, what)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }
}

/// How long the swap waits for other sessions to close the old tables.
const READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Connects, checks PostGIS, [`PgSession::preflight`] and that no other run
/// writes the schema, and creates `layer_styles` when missing (in its own
/// statement, so two runs into different schemas do not race for it at
/// their ends), then disconnects: run before the long parts of `layers`, so a
/// wrong `--pg` fails in a second.
pub(crate) fn check(target: &PgTarget) -> Result<(), PgSinkError> {
    let _quiet = QuietGdal::new();
    let (session, ds) = PgSession::connect(target)?;
    session.preflight(&ds)?;
    let free = session.value(
        &ds,
        &postgis::probe_lock_sql(target.schema()),
        "test the schema's lock",
    )?;
    if !is_true(free.as_deref()) {
        return Err(session.busy());
    }
    session.layer_styles(&ds)
}

/// Whether the swap failed on `lock_timeout` (its own message, the same in
/// every server language).
fn is_lock_timeout(e: &PgSinkError) -> bool {
    matches!(e, PgSinkError::Sql { reason, .. } if reason.contains(postgis::SWAP_TIMED_OUT))
}

/// Whether a boolean column's text (GDAL gives `1`, `t` or `true`) is true.
fn is_true(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "t" | "true"))
}

/// The first three columns of a row, NULL as empty.
fn three(row: Vec<Option<String>>) -> [String; 3] {
    let mut it = row.into_iter().map(Option::unwrap_or_default);
    [(); 3].map(|_| it.next().unwrap_or_default())
}

/// What PostGIS adds to the four layers: before them (in the transaction)
/// the lock and the checks; their staged names and creation options (the
/// schema, GiST indexes); after them the swap and the styles.
pub(crate) struct Postgis {
    session: PgSession,
}

impl Target for Postgis {
    fn begin(&mut self, ds: &mut OgrDataset) -> Result<(), OgrError> {
        self.session
            .begin(ds.dataset())
            .map_err(|e| ds.other(e.to_string()))
    }

    fn layer_name(&self, layer: &LayerDef) -> String {
        postgis::staged(layer.name)
    }

    fn layer_options(&self, layer: &LayerDef) -> Vec<String> {
        let mut o = vec![
            format!("SCHEMA={}", self.session.target.schema()),
            "FID=fid".to_string(),
        ];
        if layer.geometry != Geometry::None {
            // The GiST index is built after the rows, in `publish`.
            o.extend(["GEOMETRY_NAME=geom", "SPATIAL_INDEX=NONE"].map(String::from));
        }
        o
    }

    fn create_own_layers(&mut self, _: &mut OgrDataset, _: &SpatialRef) -> Result<(), OgrError> {
        Ok(())
    }

    fn wants_point_index(&self) -> bool {
        false
    }

    fn finish(
        &mut self,
        ds: &mut OgrDataset,
        _: &SpatialRef,
        _: Vec<rtree::Entry>,
    ) -> Result<(), OgrError> {
        self.session
            .publish(ds.dataset())
            .map_err(|e| ds.other(e.to_string()))
    }
}

/// The layers being written into PostGIS: the domain writer on the
/// connection, in one transaction (rolled back when dropped unfinished).
/// Lives on one thread.
pub(crate) struct PgWrite {
    /// Declared first: dropped (rolled back, disconnected) before `_quiet`.
    writer: LayerWriter<Postgis>,
    /// For messages: where, and what to redact.
    session: PgSession,
    _quiet: QuietGdal,
}

impl PgWrite {
    /// Connects, begins, and creates the four layers under their staged names.
    pub(crate) fn start(target: &PgTarget, layout: FileLayout) -> Result<Self, PgSinkError> {
        let quiet = QuietGdal::new();
        let (session, ds) = PgSession::connect(target)?;
        let label = format!("PostgreSQL, {}", session.place());
        let postgis = Postgis {
            session: session.clone(),
        };
        let writer = LayerWriter::new(OgrDataset::new(ds, label), postgis, layout)
            .map_err(|e| session.writer_error(&e))?;
        Ok(Self {
            writer,
            session,
            _quiet: quiet,
        })
    }

    /// Adds strings interned by the reader since the last call, in order.
    pub(crate) fn add_strings(&mut self, new: &[Box<str>]) {
        self.writer.add_strings(new);
    }

    /// Appends the drawn images among `rows`.
    pub(crate) fn write_images(&mut self, rows: &[ImageRow]) -> Result<(), PgSinkError> {
        self.writer
            .write_images(rows)
            .map_err(|e| self.session.writer_error(&e))
    }

    /// Writes the rest, publishes and commits.
    pub(crate) fn finish(
        self,
        sequences: &[SequenceLine],
        cells: &[CellCoverage],
        runs: &[RunEntry],
    ) -> Result<(), PgSinkError> {
        let Self {
            writer,
            session,
            _quiet,
        } = self;
        writer
            .finish(sequences, cells, runs)
            .map_err(|e| session.writer_error(&e))
    }
}

impl PgSession {
    /// An error of the domain writer: its own message when it carries one
    /// of ours, else GDAL's, redacted either way.
    fn writer_error(&self, e: &OgrError) -> PgSinkError {
        match e {
            OgrError::Other { message, .. } => PgSinkError::Writer(self.redact(message)),
            _ => self.sql_error("write the layers", e.to_string()),
        }
    }
}

/// What each table holds, after the mark in its comment (order of [`postgis::TABLES`]).
const DESCRIPTIONS: [&str; 4] = [
    "one point per downloaded Mapillary image",
    "lines through each sequence's images in capture order",
    "grid cells with coverage figures",
    "provenance of each fetch run",
];

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// GDAL's message for a failed call, without the crate's wrapping.
fn gdal_reason(e: gdal::errors::GdalError) -> String {
    match e {
        gdal::errors::GdalError::NullPointer { msg, .. }
        | gdal::errors::GdalError::CplError { msg, .. } => msg,
        other => other.to_string(),
    }
}

/// libpq's own words from a failed open, without GDAL's wrapping.
fn connect_reason(e: gdal::errors::GdalError) -> String {
    let msg = gdal_reason(e);
    let msg = msg.trim().trim_matches('\'').trim();
    msg.strip_prefix("PQconnectdb failed.")
        .unwrap_or(msg)
        .trim()
        .to_string()
}

/// One line of a libpq/GDAL message: its lines joined, GDAL's prefixes cut.
fn clean(msg: &str) -> String {
    let lines: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}
