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
        "{tables} already exist and were not written by mlyexport ({target}); they are left alone: \
         choose another schema with schema=NAME in --pg, or drop or rename them yourself"
    )]
    Foreign { tables: String, target: String },
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

    /// The schema the domain writer creates its layers in.
    pub(crate) fn staging(&self) -> String {
        self.target.staging()
    }

    /// Where the connection goes, for messages.
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// Inside the writer's transaction, before its layers: takes the
    /// schema's lock, refuses tables of the same names that are not ours,
    /// and creates the staging schema.
    pub(crate) fn begin(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let schema = self.target.schema().to_string();
        let taken = self.value(ds, &postgis::lock_sql(&schema), "lock the schema")?;
        if !matches!(taken.as_deref(), Some("1" | "t" | "true")) {
            return Err(PgSinkError::Busy {
                schema,
                target: self.place.clone(),
            });
        }
        self.check_foreign(ds)?;
        self.exec(
            ds,
            &format!("CREATE SCHEMA IF NOT EXISTS {}", postgis::ident(&schema)),
            "create the schema",
        )?;
        self.drop_stale_staging(ds)?;
        for sql in postgis::staging_sql(&self.staging()) {
            self.exec(ds, &sql, "create the staging schema")?;
        }
        Ok(())
    }

    /// Drops a staging schema an interrupted run left (marked as ours; the
    /// schema's lock is held, so no other run is using it); refuses a schema
    /// of that name that is not ours.
    fn drop_stale_staging(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let staging = self.staging();
        let rows = self.rows(
            ds,
            &postgis::schema_comment_sql(&staging),
            "look for a staging schema left behind",
        )?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(());
        };
        if !postgis::is_our_staging(row.into_iter().next().flatten().as_deref()) {
            return Err(PgSinkError::Foreign {
                tables: format!("the schema `{staging}`"),
                target: self.place.clone(),
            });
        }
        self.exec(
            ds,
            &format!("DROP SCHEMA {} CASCADE", postgis::ident(&staging)),
            "drop the staging schema an interrupted run left",
        )
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

    /// Indexes the staged tables, marks them as ours, swaps them in and replaces the
    /// styles, in the writer's transaction: readers see the new tables from
    /// its commit on.
    pub(crate) fn publish(&self, ds: &Dataset) -> Result<(), PgSinkError> {
        let staging = self.staging();
        for sql in postgis::index_sql(&staging) {
            self.exec(ds, &sql, "index the geometries")?;
        }
        for (table, description) in postgis::TABLES.iter().zip(DESCRIPTIONS) {
            self.exec(
                ds,
                &postgis::comment_sql(&staging, table, description),
                "comment a table",
            )?;
        }
        for sql in postgis::swap_sql(self.target.schema(), &staging) {
            self.exec(ds, &sql, "replace the old tables")?;
        }
        for sql in postgis::styles_sql(self.target.schema(), &styles::all()) {
            self.exec(ds, &sql, "write the QGIS styles into layer_styles")?;
        }
        Ok(())
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
        ogr::exec(ds, sql).map_err(|e| self.sql_error(what, e.to_string()))
    }

    /// Rows of a query, each as its columns' strings.
    fn rows(
        &self,
        ds: &Dataset,
        sql: &str,
        what: &str,
    ) -> Result<Vec<Vec<Option<String>>>, PgSinkError> {
        ogr::query(ds, sql).map_err(|e| self.sql_error(what, e.to_string()))
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

/// Connects, checks PostGIS and that the tables to replace are ours, then
/// disconnects: run before the long parts of `layers`, so a wrong `--pg`
/// fails in a second.
pub(crate) fn check(target: &PgTarget) -> Result<(), PgSinkError> {
    let _quiet = QuietGdal::new();
    let (session, ds) = PgSession::connect(target)?;
    session.check_foreign(&ds)
}

/// What PostGIS adds to the four layers: before them (in the transaction)
/// the lock, the checks and the staging schema; their creation options (the
/// staging schema, GiST indexes); after them the swap and the styles.
pub(crate) struct Postgis {
    session: PgSession,
}

impl Target for Postgis {
    fn begin(&mut self, ds: &mut OgrDataset) -> Result<(), OgrError> {
        self.session
            .begin(ds.dataset())
            .map_err(|e| ds.other(e.to_string()))
    }

    fn layer_options(&self, layer: &LayerDef) -> Vec<String> {
        let mut o = vec![
            format!("SCHEMA={}", self.session.staging()),
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
    /// Connects, begins, and creates the four layers in the staging schema.
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

/// libpq's own words from a failed open, without GDAL's wrapping.
fn connect_reason(e: gdal::errors::GdalError) -> String {
    let msg = match e {
        gdal::errors::GdalError::NullPointer { msg, .. } => msg,
        other => other.to_string(),
    };
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
