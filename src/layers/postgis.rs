//! The PostGIS target of `layers --format postgis`, its pure half: the `--pg`
//! connection string checked (no password in it, a schema name that needs no
//! quoting), libpq/GDAL messages redacted, and the SQL that stages, swaps and
//! styles the layers. No connection, no GDAL: `postgis_sink` runs this SQL.
//!
//! A run writes every table under a staged name (`images__mlyexport_new`)
//! in the target schema inside one transaction, then (still inside it) drops
//! the old tables, renames the new ones (and their indexes and sequences) to
//! the real names and replaces the QGIS styles; readers see the old or the
//! new state, never a mix. Uncommitted, the staged tables are seen by no one.

use super::styles::LayerStyle;

pub(crate) use crate::pgconn::{PgTarget, redact};

/// The tables `layers` writes, in order. Only these are ever dropped.
pub(crate) const TABLES: [&str; 4] = ["images", "sequences", "grid_cells", "runs"];

/// The tables of [`TABLES`] with a geometry (and so a GiST index).
const SPATIAL: [&str; 3] = ["images", "sequences", "grid_cells"];

/// What PostgreSQL appends to a table's name for its `fid` sequence.
const FID_SEQ: &str = "_fid_seq";

/// The comment that marks a table as written by mlyexport: a table of the
/// same name without it is never dropped.
pub(crate) const MARK: &str = "mlyexport layers";

/// An SQL identifier, double-quoted.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// An SQL string literal; `E'...'` when it holds a backslash, so it reads the
/// same whatever `standard_conforming_strings` is.
pub(crate) fn literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// `schema.table`, both quoted.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// Lists which of [`TABLES`] exist in `schema` and their comments, to check
/// they are ours before dropping them: rows of (name, comment or NULL).
pub(crate) fn existing_tables_sql(schema: &str) -> String {
    format!(
        "SELECT c.relname::text AS name, obj_description(c.oid, 'pg_class') AS comment \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {} AND c.relname IN ({}) ORDER BY c.relname",
        literal(schema),
        table_list()
    )
}

/// The names among `existing` (name, comment) that mlyexport did not write.
pub(crate) fn foreign_tables(existing: &[(String, Option<String>)]) -> Vec<String> {
    existing
        .iter()
        .filter(|(_, c)| !c.as_deref().is_some_and(|c| c.starts_with(MARK)))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The comment of a staged table: the mark, then what it holds.
pub(crate) fn comment_sql(schema: &str, table: &str, description: &str) -> String {
    format!(
        "COMMENT ON TABLE {} IS {}",
        qualified(schema, table),
        literal(&format!("{MARK}: {description}"))
    )
}

/// What a table's staged name adds to its name.
const STAGED: &str = "__mlyexport_new";

/// The name `table` is written under until the swap renames it.
pub(crate) fn staged(table: &str) -> String {
    format!("{table}{STAGED}")
}

/// One row (the comment, maybe NULL) when the schema exists, none when not.
pub(crate) fn schema_comment_sql(schema: &str) -> String {
    format!(
        "SELECT obj_description(oid, 'pg_namespace') AS comment FROM pg_namespace WHERE nspname = {}",
        literal(schema)
    )
}

/// Takes the transaction-scoped lock of `schema`, so two runs writing the
/// same schema do not interleave: one row, true when taken.
pub(crate) fn lock_sql(schema: &str) -> String {
    format!(
        "SELECT pg_try_advisory_xact_lock(hashtext({})) AS taken",
        literal(&format!("mlyexport layers {schema}"))
    )
}

/// `'images', 'sequences', 'grid_cells', 'runs'`, for `IN (...)`.
fn table_list() -> String {
    let names: Vec<String> = TABLES.iter().map(|t| literal(t)).collect();
    names.join(", ")
}

/// The same key as [`lock_sql`], taken for the session without waiting and
/// released at once: a pre-flight test that no run writes the schema. One
/// row, true when it was free.
pub(crate) fn probe_lock_sql(schema: &str) -> String {
    let key = literal(&format!("mlyexport layers {schema}"));
    format!(
        "SELECT pg_try_advisory_lock(hashtext({key})) AND pg_advisory_unlock(hashtext({key})) AS free"
    )
}

/// What the run needs to be allowed, one row of booleans: to create schemas
/// in the database (needed only when `schema` is missing), and, when
/// `schema` exists, to create tables in it (NULL when it does not exist).
pub(crate) fn privileges_sql(schema: &str) -> String {
    format!(
        "SELECT has_database_privilege(current_database(), 'CREATE') AS db, \
         (SELECT has_schema_privilege(oid, 'CREATE') FROM pg_namespace WHERE nspname = {}) AS schema",
        literal(schema)
    )
}

/// Our old tables in `schema` that the user may not drop: neither the table
/// nor the schema is owned by a role whose rights the user has. Rows of
/// (table, owner).
pub(crate) fn not_owned_sql(schema: &str) -> String {
    format!(
        "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {} AND c.relname IN ({}) \
           AND NOT pg_has_role(c.relowner, 'USAGE') AND NOT pg_has_role(n.nspowner, 'USAGE') \
         ORDER BY 1",
        literal(schema),
        table_list()
    )
}

/// What depends on our old tables, their row types, indexes or sequences
/// (other than their own parts) and would stop the swap's `DROP TABLE`:
/// views (materialised too), foreign keys, and any other object (a default
/// taking ids from our sequence, a column of our row type, a function).
/// Rows of (what, its name, our table).
pub(crate) fn dependents_sql(schema: &str) -> String {
    let (s, t) = (literal(schema), table_list());
    format!(
        "WITH ours AS ( \
           SELECT c.oid, c.reltype, c.relname::text AS t FROM pg_class c \
           JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = {s} AND c.relname IN ({t}) AND c.relkind IN ('r', 'p') \
         ), parts AS ( \
           SELECT 'pg_class'::regclass AS cls, oid AS obj, t FROM ours \
           UNION ALL SELECT 'pg_type'::regclass, reltype, t FROM ours \
           UNION ALL SELECT 'pg_class'::regclass, d.objid, o.t FROM ours o JOIN pg_depend d \
             ON d.refclassid = 'pg_class'::regclass AND d.refobjid = o.oid \
             AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
         ) \
         SELECT DISTINCT \
           CASE d.classid WHEN 'pg_rewrite'::regclass THEN 'view' \
             WHEN 'pg_constraint'::regclass THEN 'foreign key' ELSE 'object' END, \
           CASE d.classid \
             WHEN 'pg_rewrite'::regclass THEN (SELECT r.ev_class::regclass::text FROM pg_rewrite r WHERE r.oid = d.objid) \
             WHEN 'pg_constraint'::regclass THEN (SELECT k.conname || ' of ' || k.conrelid::regclass::text \
               FROM pg_constraint k WHERE k.oid = d.objid) \
             ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END, \
           p.t \
         FROM parts p JOIN pg_depend d ON d.refclassid = p.cls AND d.refobjid = p.obj AND d.deptype = 'n' \
         WHERE NOT EXISTS (SELECT 1 FROM pg_attrdef a JOIN ours o ON o.oid = a.adrelid \
             WHERE d.classid = 'pg_attrdef'::regclass AND a.oid = d.objid) \
           AND NOT EXISTS (SELECT 1 FROM pg_rewrite r JOIN ours o ON o.oid = r.ev_class \
             WHERE d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid) \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k JOIN ours o ON o.oid = k.conrelid \
             WHERE d.classid = 'pg_constraint'::regclass AND k.oid = d.objid) \
         ORDER BY 3, 2"
    )
}

/// The indexes and sequences of table `table` when it is named `name` (its
/// staged or its real name), each with its kind for `ALTER ... RENAME`: the
/// primary key and `fid` sequence PostgreSQL names after the table, and the
/// GiST index the run builds.
fn parts_of(table: &str, name: &str) -> Vec<(&'static str, String)> {
    let mut parts = vec![
        ("INDEX", format!("{name}_pkey")),
        ("SEQUENCE", format!("{name}{FID_SEQ}")),
    ];
    if SPATIAL.contains(&table) {
        parts.push(("INDEX", format!("{name}_geom_geom_idx")));
    }
    parts
}

/// The names the run brings into `schema`: the staged tables, and the index
/// and sequence names of the staged and of the new tables.
fn owned_names() -> Vec<String> {
    let mut names = Vec::new();
    for t in TABLES {
        let staged = staged(t);
        for name in [t, staged.as_str()] {
            names.extend(parts_of(t, name).into_iter().map(|(_, n)| n));
        }
        names.push(staged);
    }
    names
}

/// Relations in `schema` with a name the staged tables or the new tables'
/// indexes or sequences need, that the swap would not drop (not an index or
/// owned sequence of our old tables): e.g. the index of an old table the
/// user renamed to keep. Also types (enum, domain, ...) named as a table:
/// a table's row type takes its name.
/// Rows of (name, the table it belongs to or empty).
pub(crate) fn clashes_sql(schema: &str) -> String {
    let names: Vec<String> = owned_names().iter().map(|n| literal(n)).collect();
    let tables: Vec<String> = TABLES
        .iter()
        .flat_map(|t| [literal(t), literal(&staged(t))])
        .collect();
    format!(
        "SELECT c.relname::text, coalesce(o.relname::text, '') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_index i ON i.indexrelid = c.oid \
         LEFT JOIN pg_depend d ON c.relkind = 'S' AND d.classid = 'pg_class'::regclass \
           AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
         LEFT JOIN pg_class o ON o.oid = coalesce(i.indrelid, d.refobjid) \
         WHERE n.nspname = {s} AND c.relname IN ({}) \
           AND NOT coalesce(o.relnamespace = n.oid AND o.relname IN ({}), false) \
         UNION ALL \
         SELECT t.typname::text, '' FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
         WHERE n.nspname = {s} AND t.typrelid = 0 AND t.typname IN ({}) \
         ORDER BY 1",
        names.join(", "),
        table_list(),
        tables.join(", "),
        s = literal(schema),
    )
}

/// The other sessions holding a lock on our old tables (readers): one row,
/// their process ids comma-separated, NULL when none. Autovacuum workers are
/// left out: they give way to the swap by themselves.
pub(crate) fn readers_sql(schema: &str) -> String {
    format!(
        "SELECT string_agg(DISTINCT l.pid::text, ', ') FROM pg_locks l \
         JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {} AND c.relname IN ({}) AND l.pid <> pg_backend_pid() AND l.granted \
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a \
             WHERE a.pid = l.pid AND a.backend_type = 'autovacuum worker')",
        literal(schema),
        table_list()
    )
}

/// How long one try of the swap waits for the old tables' locks (new readers
/// queue behind it meanwhile).
pub(crate) const SWAP_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '2s'";

/// The `GRANT`s that give the staged tables what the old tables granted to
/// other roles, on the tables, on their columns (those the new table has)
/// and on their `fid` sequences: rows of one statement each. The owner's own
/// rights are not copied; the schema's default privileges PostgreSQL applied
/// itself when the staged tables were created.
pub(crate) fn grants_sql(schema: &str) -> String {
    let (s, t, staged) = (literal(schema), table_list(), literal(STAGED));
    let seqs: Vec<String> = TABLES
        .iter()
        .map(|t| literal(&format!("{t}{FID_SEQ}")))
        .collect();
    let to = "CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END \
              || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END";
    // The rows of `acl` (an ACL column of `c`) of relations in `schema`,
    // but the user's own.
    let granted = |acl: &str| {
        format!(
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = {s} \
             CROSS JOIN LATERAL aclexplode({acl}) a \
             WHERE a.grantee <> (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        )
    };
    let (fid_seq, cut) = (literal(FID_SEQ), FID_SEQ.len());
    format!(
        "SELECT DISTINCT g FROM ( \
           SELECT format('GRANT %s ON TABLE %I.%I TO %s', a.privilege_type, {s}, c.relname || {staged}, {to}) AS g \
           FROM pg_class c {} AND c.relname IN ({t}) \
         UNION ALL \
           SELECT format('GRANT %s (%I) ON TABLE %I.%I TO %s', a.privilege_type, o.attname, {s}, c.relname || {staged}, {to}) \
           FROM pg_class c JOIN pg_attribute o ON o.attrelid = c.oid AND o.attnum > 0 AND NOT o.attisdropped \
           JOIN pg_attribute nw ON nw.attrelid = to_regclass(format('%I.%I', {s}, c.relname || {staged})) \
             AND nw.attname = o.attname AND NOT nw.attisdropped \
           {} AND c.relname IN ({t}) \
         UNION ALL \
           SELECT format('GRANT %s ON SEQUENCE %I.%I TO %s', a.privilege_type, {s}, left(c.relname, -{cut}) || {staged} || {fid_seq}, {to}) \
           FROM pg_class c {} AND c.relkind = 'S' AND c.relname IN ({}) \
         ) x ORDER BY 1",
        granted("c.relacl"),
        granted("o.attacl"),
        granted("c.relacl"),
        seqs.join(", ")
    )
}

/// Gives each staged table the owner of the old table it replaces, when that
/// is another role the user is a member of (a team's role) and that role
/// may create in the schema (`OWNER TO` needs it): rows of one statement
/// each. Without it a team's tables would pass to whichever member
/// ran last, and the next member could not replace them.
pub(crate) fn owners_sql(schema: &str) -> String {
    let s = literal(schema);
    format!(
        "SELECT format('ALTER TABLE %I.%I OWNER TO %I', {s}, c.relname || {}, pg_get_userbyid(c.relowner)) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {s} AND c.relname IN ({}) AND c.relkind IN ('r', 'p') \
           AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = current_user) \
           AND pg_has_role(c.relowner, 'MEMBER') AND has_schema_privilege(c.relowner, n.oid, 'CREATE') \
         ORDER BY 1",
        literal(STAGED),
        table_list()
    )
}

/// The GiST indexes of the staged spatial tables, built once their rows are
/// in (faster than GDAL's, made before the rows and updated per row); named
/// as GDAL names them (for the staged name; the swap renames them).
pub(crate) fn index_sql(schema: &str) -> Vec<String> {
    SPATIAL
        .iter()
        .map(|t| {
            let staged = staged(t);
            format!(
                "CREATE INDEX {} ON {} USING GIST (\"geom\")",
                ident(&format!("{staged}_geom_geom_idx")),
                qualified(schema, &staged)
            )
        })
        .collect()
}

/// The text a timed-out swap fails with: raised by [`swap_sql`] itself, so it
/// reads the same whatever language the server speaks.
pub(crate) const SWAP_TIMED_OUT: &str =
    "mlyexport: the swap timed out waiting for locks on the old tables";

/// The one statement that publishes the staged tables: drop the old ones,
/// rename the staged ones and their indexes and sequences to the real
/// names. Run inside the writing transaction, so readers switch at its
/// commit. A `DO` block, so a lock wait that hits `lock_timeout` (SQLSTATE
/// 55P03, in any step) fails with [`SWAP_TIMED_OUT`] rather than the
/// server's translated message.
pub(crate) fn swap_sql(schema: &str) -> String {
    let old: Vec<String> = TABLES.iter().map(|t| qualified(schema, t)).collect();
    let mut body = vec![format!("DROP TABLE IF EXISTS {}", old.join(", "))];
    for t in TABLES {
        let staged = staged(t);
        body.push(format!(
            "ALTER TABLE {} RENAME TO {}",
            qualified(schema, &staged),
            ident(t)
        ));
        for ((kind, from), (_, to)) in parts_of(t, &staged).into_iter().zip(parts_of(t, t)) {
            body.push(format!(
                "ALTER {kind} {} RENAME TO {}",
                qualified(schema, &from),
                ident(&to)
            ));
        }
    }
    let block = format!(
        "BEGIN {}; EXCEPTION WHEN lock_not_available THEN \
         RAISE EXCEPTION USING ERRCODE = 'lock_not_available', MESSAGE = {}; END",
        body.join("; "),
        literal(SWAP_TIMED_OUT)
    );
    format!("DO {}", literal(&block))
}

/// QGIS 3.22's own definition of `layer_styles` (its PostgreSQL provider
/// creates it unqualified, so it lands in the first schema of the search
/// path, usually `public`, and reads it from there).
pub(crate) const CREATE_LAYER_STYLES: &str = "CREATE TABLE IF NOT EXISTS layer_styles(\
id SERIAL PRIMARY KEY, f_table_catalog varchar, f_table_schema varchar, f_table_name varchar, \
f_geometry_column varchar, styleName text, styleQML xml, styleSLD xml, useAsDefault boolean, \
description text, owner varchar(63) DEFAULT CURRENT_USER, ui xml, \
update_time timestamp DEFAULT CURRENT_TIMESTAMP, type varchar)";

/// Whether the user may replace rows of `layer_styles` (read, delete,
/// insert, and take ids from its sequence, which `USAGE` or `UPDATE`
/// allows): one row, one boolean.
pub(crate) const LAYER_STYLES_RIGHTS: &str = "SELECT has_table_privilege('layer_styles', 'SELECT') \
AND has_table_privilege('layer_styles', 'INSERT') AND has_table_privilege('layer_styles', 'DELETE') \
AND coalesce(has_sequence_privilege(pg_get_serial_sequence('layer_styles', 'id'), 'USAGE, UPDATE'), true)";

/// Replaces this schema's mlyexport styles in `layer_styles`: deletes the
/// rows of the same table and style name, inserts each style. A style is the
/// default unless the user has made another style of that table the default
/// (QGIS reads `f_table_catalog` = the database, `f_table_schema` = the
/// schema, `f_geometry_column` NULL for a table without geometry).
pub(crate) fn styles_sql(schema: &str, styles: &[(LayerStyle, String)]) -> Vec<String> {
    let mut sql = Vec::new();
    for (style, qml) in styles {
        let same_table = format!(
            "f_table_catalog = current_database() AND f_table_schema = {} AND f_table_name = {}",
            literal(schema),
            literal(style.table)
        );
        let name = literal(style.name);
        sql.push(format!(
            "DELETE FROM layer_styles WHERE {same_table} AND styleName = {name}"
        ));
        let geometry = if style.geometry_column.is_empty() {
            "NULL".to_string()
        } else {
            literal(style.geometry_column)
        };
        sql.push(format!(
            "INSERT INTO layer_styles(f_table_catalog, f_table_schema, f_table_name, \
             f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description) \
             SELECT current_database(), {}, {}, {geometry}, {name}, XMLPARSE(DOCUMENT {}), NULL, \
             NOT EXISTS (SELECT 1 FROM layer_styles WHERE {same_table} AND useAsDefault), {}",
            literal(schema),
            literal(style.table),
            literal(qml),
            literal(style.description),
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgconn::PgError;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parses_pairs_and_takes_the_schema_out() {
        let t = PgTarget::parse("PG:host=db.example.org  port = 5433 dbname='my gis' schema=mly")
            .unwrap();
        assert_eq!(t.schema(), "mly");
        assert_eq!(
            t.gdal_name(),
            "PG:host='db.example.org' port='5433' dbname='my gis'"
        );
        assert_eq!(
            t.describe(no_env),
            "host `db.example.org`, port 5433, database `my gis`, user `(the login name)`"
        );
        assert_eq!(
            t.probe(),
            "pg_isready -h db.example.org -p 5433 -d 'my gis'"
        );
        let t = PgTarget::parse("PG:dbname=x").unwrap();
        assert_eq!(t.schema(), "public");
        let env = |k: &str| (k == "PGUSER").then(|| "ann".to_string());
        assert_eq!(
            t.describe(env),
            "host `local socket`, port 5432, database `x`, user `ann`"
        );
        let t = PgTarget::parse(r"PG:service=prod dbname='it\'s'").unwrap();
        assert_eq!(t.gdal_name(), r"PG:service='prod' dbname='it\'s'");
        assert!(t.describe(no_env).starts_with("service `prod`"));
    }

    #[test]
    fn refuses_passwords_uris_bad_schemas_and_syntax() {
        for s in [
            "PG:host=h password=secret",
            "PG:host=h PASSWORD = 'a b'",
            "PG:postgresql://u:secret@h/db",
        ] {
            assert_eq!(PgTarget::parse(s), Err(PgError::Password), "{s}");
        }
        for uri in ["PG:postgresql://h/db", "PG:postgresql://u@h:5432/db"] {
            assert_eq!(PgTarget::parse(uri), Err(PgError::Uri), "{uri}");
        }
        assert_eq!(
            PgTarget::parse("PG:postgres://h/db?password=x"),
            Err(PgError::Password)
        );
        assert_eq!(
            PgTarget::parse("postgresql://ann:se?cret@h/db"),
            Err(PgError::NoPrefix)
        );
        for hidden in [
            "PG:host=h sslpassword=key",
            "PG:dbname='host=h password=PW'",
            "PG:dbname='postgresql://u:PW@h/db'",
            "PG:options='-c x=1' dbname='PASSWORD = PW'",
        ] {
            assert_eq!(PgTarget::parse(hidden), Err(PgError::Password), "{hidden}");
        }
        for expanded in ["PG:dbname='host=h'", "PG:dbname=postgresql://h/db"] {
            assert_eq!(
                PgTarget::parse(expanded),
                Err(PgError::Expanded),
                "{expanded}"
            );
        }
        for bad in ["Mly", "1a", "a-b", "pg_x", "", &"a".repeat(64)] {
            let s = format!("PG:dbname=x schema='{bad}'");
            assert!(
                matches!(PgTarget::parse(&s), Err(PgError::Schema(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            PgTarget::parse("PG:dbname=x active_schema=y"),
            Err(PgError::GdalKey(_))
        ));
        assert!(matches!(
            PgTarget::parse("PG:dbname='x"),
            Err(PgError::Syntax(..))
        ));
        assert!(matches!(
            PgTarget::parse("PG:dbname"),
            Err(PgError::Syntax(..))
        ));
    }

    #[test]
    fn redaction_hides_every_form_of_secret() {
        let msg = "PQconnectdb failed for `PG:host=h password='a b\\' c' user=u` and password = x1 \
                   and postgresql://ann:s3cret@h:5432/db; FATAL: auth failed, sent hunter2";
        let r = redact(msg, &["hunter2"]);
        let escaped = redact("host=h password=hun\\ ter2xyz user=u", &[]);
        assert_eq!(escaped, "host=h password=*** user=u");
        let query = redact("postgresql://ann:se?cret@h/db", &[]);
        assert_eq!(query, "postgresql://ann:***@h/db");
        for secret in ["a b", "x1", "s3cret", "hunter2"] {
            assert!(!r.contains(secret), "{secret} in {r}");
        }
        assert!(r.contains("user=u"), "{r}");
        assert!(r.contains("postgresql://ann:***@h:5432/db"), "{r}");
        assert_eq!(
            redact("password authentication failed", &[]),
            "password authentication failed"
        );
        assert_eq!(redact("no secret here", &[""]), "no secret here");
        // A short password is hidden where it stands alone, not inside words.
        assert_eq!(
            redact("connection to server at a (127.0.0.1) failed: a,a", &["a"]),
            "connection to server at *** (127.0.0.1) failed: ***,***"
        );
        assert_eq!(
            redact("pw xy1 xy1xy1 (xy1)", &["xy1"]),
            "pw *** xy1xy1 (***)"
        );
        assert_eq!(redact("longsecretlongsecret", &["longsecret"]), "******");
    }

    #[test]
    fn sql_quotes_and_swaps_only_our_tables() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b'"), "E'a\\\\b'''");
        let swap = swap_sql("mly");
        assert!(
            swap.starts_with(
                "DO 'BEGIN DROP TABLE IF EXISTS \"mly\".\"images\", \"mly\".\"sequences\", \
                 \"mly\".\"grid_cells\", \"mly\".\"runs\"; \
                 ALTER TABLE \"mly\".\"images__mlyexport_new\" RENAME TO \"images\"; \
                 ALTER INDEX \"mly\".\"images__mlyexport_new_pkey\" RENAME TO \"images_pkey\"; \
                 ALTER SEQUENCE \"mly\".\"images__mlyexport_new_fid_seq\" RENAME TO \"images_fid_seq\"; \
                 ALTER INDEX \"mly\".\"images__mlyexport_new_geom_geom_idx\" RENAME TO \"images_geom_geom_idx\"; "
            ),
            "{swap}"
        );
        assert!(
            swap.ends_with(
                "ALTER SEQUENCE \"mly\".\"runs__mlyexport_new_fid_seq\" RENAME TO \"runs_fid_seq\"; \
                 EXCEPTION WHEN lock_not_available THEN \
                 RAISE EXCEPTION USING ERRCODE = ''lock_not_available'', \
                 MESSAGE = ''mlyexport: the swap timed out waiting for locks on the old tables''; END'"
            ),
            "{swap}"
        );
        assert!(!swap.contains("CASCADE") && !swap.contains("runs_geom"));
        assert_eq!(
            index_sql("s")[0],
            "CREATE INDEX \"images__mlyexport_new_geom_geom_idx\" ON \"s\".\"images__mlyexport_new\" \
             USING GIST (\"geom\")"
        );
        let existing = vec![
            ("images".to_string(), Some(format!("{MARK}: images"))),
            ("runs".to_string(), None),
            ("sequences".to_string(), Some("someone else's".to_string())),
        ];
        assert_eq!(foreign_tables(&existing), vec!["runs", "sequences"]);
        let clashes = clashes_sql("mly");
        for name in [
            "'images_pkey'",
            "'runs_fid_seq'",
            "'grid_cells_geom_geom_idx'",
            "'grid_cells__mlyexport_new'",
            "'runs__mlyexport_new_pkey'",
        ] {
            assert!(clashes.contains(name), "{name}");
        }
        assert!(!clashes.contains("runs_geom_geom_idx"));
        assert!(
            grants_sql("mly")
                .contains("'mly', left(c.relname, -8) || '__mlyexport_new' || '_fid_seq'"),
            "{}",
            grants_sql("mly")
        );
        assert!(readers_sql("mly").contains("l.pid <> pg_backend_pid()"));
    }

    #[test]
    fn styles_replace_only_ours_and_keep_a_users_default() {
        let sql = styles_sql("mly", &super::super::styles::all());
        assert_eq!(sql.len(), 2 * 4);
        assert!(CREATE_LAYER_STYLES.starts_with("CREATE TABLE IF NOT EXISTS layer_styles("));
        let runs = sql.last().unwrap();
        assert!(runs.contains("'runs', NULL, 'runs'"), "{runs}");
        assert!(sql[1].contains("'images', 'geom', 'images'"), "{}", sql[1]);
        assert!(
            sql[0]
                .starts_with("DELETE FROM layer_styles WHERE f_table_catalog = current_database()")
        );
    }
}
