//! SQL over the catalog, planned and run by DataFusion. Each statement gets a session of its
//! own holding only the tables it names, each checked for access first, so a plan can never
//! touch a table the caller may not read. Writes (`CREATE TABLE AS SELECT`, `INSERT`,
//! `DELETE`, `CREATE VIEW`, `DROP`) are done by tarn on the plan DataFusion made, so they go
//! through the same catalog, lake and checks as the table API.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

use futures::StreamExt;

use deltalake::arrow::array::{ArrayRef, UInt64Array};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, Session,
};
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::common::tree_node::{Transformed, TreeNode};
use deltalake::datafusion::dataframe::DataFrame;
use deltalake::datafusion::datasource::ViewTable;
use deltalake::datafusion::execution::SessionStateBuilder;
use deltalake::datafusion::execution::context::{SessionConfig, SessionContext};
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::logical_expr::{
    DdlStatement, DmlStatement, Expr, LogicalPlan, WriteOp, dml::InsertOp,
};
use deltalake::datafusion::sql::parser::{DFParserBuilder, Statement};
use deltalake::datafusion::sql::sqlparser::ast::{
    FromTable, Ident, ObjectName, ObjectNamePart, Statement as SqlStatement, TableFactor,
    TableObject, TableVersion, VisitMut, VisitorMut,
};
use deltalake::datafusion::sql::sqlparser::dialect::DatabricksDialect;
use deltalake::datafusion::sql::sqlparser::parser::{Parser, ParserError};
use deltalake::datafusion::sql::sqlparser::tokenizer::Token;
use deltalake::delta_datafusion::planner::DeltaPlanner;
use tarn_core::catalog::{self, NewSchema, NewTable, Privilege, TableInfo, TableType};
use tarn_core::lineage::{NewLineage, Node, SourceRead};
use tarn_core::store::MetaStore;
use tarn_core::{Error, ErrorCode, Result};

use crate::access::{Securable, authorize, authorize_create_table, reach_catalog, require_owner};
use crate::catalog::{ManagedTable, location_of, new_table_id};
use crate::columns::columns_of_arrow;
use crate::error::sql_error;

use crate::nesting::check_expression_depth;
use crate::tables::{At, Lake, PlanWrite, parse_timestamp};
use tarn_core::caller::Caller;

/// How deep views may nest (a view over a view over ...).
const MAX_VIEW_DEPTH: usize = 16;
/// The schema unqualified names resolve in when the caller names none.
pub const DEFAULT_SCHEMA: &str = "default";

/// Where unqualified names resolve: the caller's workspace catalog and `default` unless given.
#[derive(Debug, Clone, Default)]
pub struct SqlScope {
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub limits: SqlLimits,
    pub rows: ResultRows,
}

/// Bounds on what one statement may hold; none unless given.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlLimits {
    /// Bytes the statement's operators may hold at once; sorts, joins and aggregations spill
    /// to disk past it, and what cannot spill fails with an error naming the limit.
    pub memory: Option<usize>,
    /// Bytes of result rows kept (Arrow's in-memory size); rows past it are not read, and the
    /// output says it was truncated.
    pub result_bytes: Option<usize>,
}

/// Where a query's rows go.
#[derive(Debug, Clone, Default)]
pub enum ResultRows {
    /// Into memory, within `SqlLimits::result_bytes`.
    #[default]
    InMemory,
    /// Into Arrow IPC stream files in this folder, as the plan makes them, a file every
    /// [`RESULT_FILE_BYTES`]: a result of any size, holding one batch in memory at a time.
    Files(std::path::PathBuf),
    /// Into a channel, as the plan makes them; the plan waits while the channel is full, so
    /// the reader's pace bounds what is held.
    Channel(tokio::sync::mpsc::Sender<RecordBatch>),
}

/// About how many bytes of rows (Arrow's in-memory size) one result file holds.
pub const RESULT_FILE_BYTES: usize = 16 * 1024 * 1024;

/// One file of a result written to files.
#[derive(Debug, Clone)]
pub struct ResultFile {
    pub path: std::path::PathBuf,
    pub rows: usize,
    /// Its size on disk.
    pub bytes: u64,
}

/// The rows a statement produced; writes answer with counts, as Databricks does.
#[derive(Debug, Clone)]
pub struct SqlOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// The tables and views a query read, at the versions it read (empty for writes, whose
    /// reads go to the lineage graph).
    pub reads: Vec<SourceRead>,
    /// Whether rows were left out at the result's byte limit.
    pub truncated: bool,
    /// The files holding the rows, for a query asked to write them to files (`batches` is
    /// then empty).
    pub files: Vec<ResultFile>,
}

impl SqlOutput {
    fn empty() -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
            reads: Vec::new(),
            truncated: false,
            files: Vec::new(),
        }
    }

    fn counts(counts: &[(&str, u64)]) -> Result<Self> {
        let schema = Arc::new(Schema::new(
            counts
                .iter()
                .map(|(name, _)| Field::new(*name, DataType::UInt64, false))
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = counts
            .iter()
            .map(|(_, n)| Arc::new(UInt64Array::from(vec![*n])) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::internal_from("cannot build the result", e))?;
        Ok(Self {
            schema,
            batches: vec![batch],
            reads: Vec::new(),
            truncated: false,
            files: Vec::new(),
        })
    }

    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The cores this process may run on.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// A failure of tarn's own while reading (a data file gone, a corrupt file) names the tables
/// the statement read, which a storage path alone does not.
fn naming_reads(mut err: Error, reads: &[SourceRead]) -> Error {
    if err.code != ErrorCode::InternalError || reads.is_empty() {
        return err;
    }
    let names: Vec<&str> = reads.iter().map(|read| read.node.name.as_str()).collect();
    err.message = format!("{} (reading {})", err.message, names.join(", "));
    err
}

/// Turns `t VERSION AS OF 3` / `t TIMESTAMP AS OF '...'` into a reference to a table named
/// `t@v3` / `t@t<millis>`, which the session then holds at that version: DataFusion itself
/// plans no time travel. `@` never occurs in catalog names, so these cannot collide.
/// Also notes the table functions called (`generate_series(1, 10)`): they are no tables.
#[derive(Default)]
struct TimeTravel {
    at: HashMap<String, At>,
    functions: std::collections::HashSet<String>,
}

impl TimeTravel {
    fn moment(version: &TableVersion) -> Result<At> {
        let literal = |expr: &dyn std::fmt::Display| {
            let text = expr.to_string();
            let text = text.trim();
            let text = text
                .strip_prefix("TIMESTAMP ")
                .or_else(|| text.strip_prefix("timestamp "))
                .unwrap_or(text);
            text.trim_matches('\'').to_string()
        };
        match version {
            TableVersion::VersionAsOf(expr) => {
                let text = literal(expr);
                text.parse::<u64>().map(At::Version).map_err(|_| {
                    Error::invalid(format!(
                        "Invalid VERSION AS OF {text}: expected a version number"
                    ))
                })
            }
            TableVersion::TimestampAsOf(expr) | TableVersion::ForSystemTimeAsOf(expr) => {
                Ok(At::Timestamp(parse_timestamp(&literal(expr))?))
            }
            other => Err(Error::invalid(format!(
                "Unsupported table version clause: {other}"
            ))),
        }
    }
}

impl VisitorMut for TimeTravel {
    type Break = Error;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::Table {
            name,
            version,
            args,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        if args.is_some() {
            self.functions.insert(name.to_string().to_lowercase());
            return ControlFlow::Continue(());
        }
        let Some(clause) = version.take() else {
            return ControlFlow::Continue(());
        };
        let at = match Self::moment(&clause) {
            Ok(at) => at,
            Err(err) => return ControlFlow::Break(err),
        };
        let Some(ObjectNamePart::Identifier(ident)) = name.0.last_mut() else {
            return ControlFlow::Break(Error::invalid(format!(
                "Invalid table name in a time travel clause: {name}"
            )));
        };
        let base = if ident.quote_style.is_none() {
            ident.value.to_lowercase()
        } else {
            ident.value.clone()
        };
        let travelled = match at {
            At::Version(v) => format!("{base}@v{v}"),
            At::Timestamp(t) => format!("{base}@t{}", t.timestamp_millis()),
            At::Latest => base,
        };
        self.at.insert(travelled.clone(), at);
        *ident = Ident::with_quote('"', travelled);
        ControlFlow::Continue(())
    }
}

/// Qualifies the table names of a view's query, so the view means the same tables whoever
/// queries it from wherever.
struct Qualify<'a> {
    resolved: &'a HashMap<String, [String; 3]>,
}

impl VisitorMut for Qualify<'_> {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        if let Some([catalog, schema, table]) = self.resolved.get(&relation.to_string()) {
            *relation = ObjectName::from(vec![
                Ident::new(catalog),
                Ident::new(schema),
                Ident::with_quote('"', table),
            ]);
        }
        ControlFlow::Continue(())
    }
}

/// Checks that `text` is one SQL expression and nothing more: a Delta delete would parse the
/// expression and quietly ignore whatever follows it (`id = 1; DROP TABLE x`).
pub(crate) fn check_predicate(text: &str) -> Result<()> {
    check_expression_depth(text)?;
    let dialect = DatabricksDialect {};
    let invalid = |e: ParserError| Error::invalid(format!("Invalid predicate '{text}': {e}"));
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(invalid)?;
    parser.parse_expr().map_err(invalid)?;
    parser.expect_token(&Token::EOF).map_err(invalid)?;
    Ok(())
}

fn parse(sql: &str) -> Result<Statement> {
    check_expression_depth(sql)?;
    let dialect = DatabricksDialect {};
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(&dialect)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(sql_error)?;
    match (statements.pop_front(), statements.is_empty()) {
        (Some(statement), true) => Ok(statement),
        (None, _) => Err(Error::invalid("The SQL text holds no statement")),
        (Some(_), false) => Err(Error::invalid(
            "Send one SQL statement at a time: the text holds several",
        )),
    }
}

/// The inner SQL statement, refusing DataFusion's extensions that reach outside the lake
/// (`CREATE EXTERNAL TABLE` reads and `COPY ... TO` writes arbitrary files).
fn sql_statement(statement: &mut Statement) -> Result<&mut SqlStatement> {
    match statement {
        Statement::Statement(inner) => Ok(inner),
        Statement::Explain(explain) => sql_statement(&mut explain.statement),
        Statement::CreateExternalTable(_) => Err(Error::invalid(
            "CREATE EXTERNAL TABLE is not supported: register external Delta tables through the catalog API",
        )),
        Statement::CopyTo(_) => Err(Error::invalid(
            "COPY ... TO is not supported: fetch results through the statement API or write them to a table",
        )),
        other => Err(Error::invalid(format!(
            "Unsupported statement: {}",
            other.to_string().chars().take(60).collect::<String>()
        ))),
    }
}

/// One statement's session: the tables it named, registered under their full names.
struct Prepared {
    context: SessionContext,
    statement: Statement,
    /// The query of a `CREATE VIEW`, with its table names qualified.
    view_query: Option<String>,
    /// The tables and views the statement names, at the versions registered, for lineage.
    reads: Vec<SourceRead>,
}

/// What a writing statement wrote, for lineage.
struct Produced {
    target: String,
    version: Option<u64>,
    operation: &'static str,
}

/// Lineage keeps statements up to this many characters.
const MAX_RECORDED_STATEMENT: usize = 65_536;

impl Lake {
    /// Runs one SQL statement for `caller`.
    pub async fn sql(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        sql: &str,
        scope: &SqlScope,
    ) -> Result<SqlOutput> {
        self.run_sql(store, caller, parse(sql)?, sql, scope, &BTreeMap::new())
            .await
    }

    /// Runs a query (nothing that writes) for `caller`, reading the tables named in `pinned`
    /// (full name -> version) at those versions unless the query says otherwise, so a query
    /// whose reads were recorded reads the same rows again.
    pub async fn query(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        sql: &str,
        pinned: &BTreeMap<String, u64>,
    ) -> Result<SqlOutput> {
        let mut statement = parse(sql)?;
        if !matches!(sql_statement(&mut statement)?, SqlStatement::Query(_)) {
            return Err(Error::invalid(
                "Expected a query (SELECT ...): this statement would change the lakehouse",
            ));
        }
        self.run_sql(store, caller, statement, sql, &SqlScope::default(), pinned)
            .await
    }

    /// Runs a query as `query` does, sending its rows to `rows` as the plan makes them instead
    /// of gathering them: a reader that decodes as they come holds a large result about once.
    /// The channel closes when the query ends.
    pub async fn query_streamed(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        sql: &str,
        pinned: &BTreeMap<String, u64>,
        rows: tokio::sync::mpsc::Sender<RecordBatch>,
    ) -> Result<SqlOutput> {
        let mut statement = parse(sql)?;
        if !matches!(sql_statement(&mut statement)?, SqlStatement::Query(_)) {
            return Err(Error::invalid(
                "Expected a query (SELECT ...): this statement would change the lakehouse",
            ));
        }
        let scope = SqlScope {
            rows: ResultRows::Channel(rows),
            ..SqlScope::default()
        };
        self.run_sql(store, caller, statement, sql, &scope, pinned)
            .await
    }

    async fn run_sql(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        statement: Statement,
        sql: &str,
        scope: &SqlScope,
        pinned: &BTreeMap<String, u64>,
    ) -> Result<SqlOutput> {
        let catalog_name = match &scope.catalog {
            Some(name) => catalog::normalize_name("catalog", name)?,
            None => caller.workspace.clone(),
        };
        let schema_name = match &scope.schema {
            Some(name) => catalog::normalize_name("schema", name)?,
            None => DEFAULT_SCHEMA.to_string(),
        };
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(&catalog_name, &schema_name)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(false)
            // Twice as many partitions as cores: a file splits into ranges of whole row
            // groups, rarely of equal size, and a core done early takes the next range.
            .with_target_partitions(2 * cores())
            // Filters run inside the Parquet decoder: columns not filtered on are decoded
            // only for the rows that pass (late materialisation).
            .set_bool("datafusion.execution.parquet.pushdown_filters", true)
            // delta-rs's workaround for a hash-join pushdown panic on dictionary keys.
            .set_usize("datafusion.optimizer.hash_join_inlist_pushdown_max_size", 0)
            .set_usize(
                "datafusion.optimizer.hash_join_inlist_pushdown_max_distinct_values",
                0,
            );
        let runtime = match scope.limits.memory {
            // The lake's caches and spill folder, with a memory pool of the statement's own.
            Some(limit) => RuntimeEnvBuilder::from_runtime_env(&self.runtime())
                .with_memory_pool(Arc::new(FairSpillPool::new(limit)))
                .build_arc()
                .map_err(sql_error)?,
            None => self.runtime(),
        };
        // delta-rs's planner runs the plan nodes its writes add.
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_query_planner(DeltaPlanner::new())
            .build();
        let context = SessionContext::new_with_state(state);
        let prepared = self
            .prepare(store, caller, context, statement, pinned, 0)
            .await?;
        let plan = prepared
            .context
            .state()
            .statement_to_plan(prepared.statement)
            .await
            .map_err(sql_error)?;
        let (mut output, produced) = self
            .execute(
                store,
                caller,
                &prepared.context,
                plan,
                prepared.view_query,
                scope,
            )
            .await
            .map_err(|err| naming_reads(err, &prepared.reads))?;
        let Some(produced) = produced else {
            output.reads = prepared.reads;
            return Ok(output);
        };
        // A statement reading the table it writes (`INSERT INTO t SELECT ... FROM t`)
        // makes no edge to itself.
        let sources = prepared
            .reads
            .into_iter()
            .filter(|read| read.node.name != produced.target)
            .collect();
        let mut write = NewLineage::new(
            Node::table(produced.target),
            produced.version.map(|v| v as i64),
            produced.operation,
            caller.principal.name.clone(),
        )
        .reading(sources);
        write.statement = Some(sql.chars().take(MAX_RECORDED_STATEMENT).collect());
        store.record_committed_write(&write).await;
        Ok(output)
    }

    /// Registers every table and view the statement names (at the versions it asks for),
    /// after checking the caller may reach each.
    async fn prepare(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        context: SessionContext,
        mut statement: Statement,
        pinned: &BTreeMap<String, u64>,
        depth: usize,
    ) -> Result<Prepared> {
        if depth > MAX_VIEW_DEPTH {
            return Err(Error::invalid(format!(
                "Views nest deeper than {MAX_VIEW_DEPTH} levels (or refer to themselves)"
            )));
        }
        let inner = sql_statement(&mut statement)?;
        let creates_or_drops = matches!(
            inner,
            SqlStatement::CreateTable(_)
                | SqlStatement::CreateView(_)
                | SqlStatement::Drop { .. }
                | SqlStatement::CreateSchema { .. }
        );
        let write_target = write_target(inner);
        let mut travel = TimeTravel::default();
        if let ControlFlow::Break(err) = inner.visit(&mut travel) {
            return Err(err);
        }
        let state = context.state();
        let defaults = state.config_options().catalog.clone();
        let references = state
            .resolve_table_references(&statement)
            .map_err(sql_error)?;
        let mut resolved: HashMap<String, [String; 3]> = HashMap::new();
        let mut reads = Vec::new();
        for reference in references {
            if travel
                .functions
                .contains(&reference.to_string().to_lowercase())
            {
                continue;
            }
            let full = reference
                .clone()
                .resolve(&defaults.default_catalog, &defaults.default_schema);
            let (catalog, schema, registered) = (
                full.catalog.to_string(),
                full.schema.to_string(),
                full.table.to_string(),
            );
            let (name, at) = match travel.at.get(&registered) {
                Some(at) => (
                    registered
                        .rsplit_once('@')
                        .map_or(registered.as_str(), |(base, _)| base)
                        .to_string(),
                    *at,
                ),
                None => {
                    let full_name = format!("{catalog}.{schema}.{registered}");
                    let at = pinned
                        .get(&full_name)
                        .map_or(At::Latest, |v| At::Version(*v));
                    (registered.clone(), at)
                }
            };
            resolved.insert(
                reference.to_string(),
                [catalog.clone(), schema.clone(), name.clone()],
            );
            reach_catalog(store, caller, &catalog, false).await?;
            let table = match store.get_table(&catalog, &schema, &name).await {
                Ok(table) => table,
                // The table a CREATE makes or a DROP removes may well not exist.
                Err(err) if err.code == ErrorCode::ResourceDoesNotExist && creates_or_drops => {
                    continue;
                }
                Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {
                    return Err(Error::not_found(format!(
                        "Table or view not found: {catalog}.{schema}.{name}"
                    )));
                }
                Err(err) => return Err(err),
            };
            // The table an INSERT or DELETE writes is checked for MODIFY when it runs.
            if write_target.as_deref() != Some(reference.to_string().as_str()) {
                authorize(store, caller, &Securable::table(&table), Privilege::Select).await?;
            }
            let (provider, version) = if table.table_type == TableType::View {
                if at != At::Latest {
                    return Err(Error::invalid(format!(
                        "{} is a view: views have no versions to travel to",
                        table.full_name
                    )));
                }
                let view = Box::pin(self.prepare(
                    store,
                    caller,
                    context.clone(),
                    parse(&table.view_definition)?,
                    pinned,
                    depth + 1,
                ))
                .await?;
                let plan = context
                    .state()
                    .statement_to_plan(view.statement)
                    .await
                    .map_err(sql_error)?;
                let view = Arc::new(ViewTable::new(plan, Some(table.view_definition.clone())))
                    as Arc<dyn deltalake::datafusion::catalog::TableProvider>;
                (view, None)
            } else {
                let (provider, version) = self
                    .provider(
                        &location_of(&table)?,
                        &table.full_name,
                        at,
                        &context.state(),
                    )
                    .await?;
                (provider, Some(version as i64))
            };
            // Tables a view reads are the view's lineage, not the statement's.
            if depth == 0 {
                reads.push(SourceRead {
                    node: Node::table(table.full_name.clone()),
                    version,
                });
            }
            register(&context, &catalog, &schema, &registered, provider)?;
        }
        let view_query = match sql_statement(&mut statement)? {
            SqlStatement::CreateView(view) => {
                let mut query = view.query.clone();
                let _ = query.visit(&mut Qualify {
                    resolved: &resolved,
                });
                Some(query.to_string())
            }
            _ => None,
        };
        Ok(Prepared {
            context,
            statement,
            view_query,
            reads,
        })
    }

    async fn execute(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        context: &SessionContext,
        plan: LogicalPlan,
        view_query: Option<String>,
        scope: &SqlScope,
    ) -> Result<(SqlOutput, Option<Produced>)> {
        let unproduced = |output: Result<SqlOutput>| output.map(|output| (output, None));
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                let (catalog, schema, name) = names(context, &create.name)?;
                self.create_table_as(
                    store,
                    caller,
                    context,
                    ManagedTable {
                        catalog,
                        schema,
                        name,
                        ..ManagedTable::default()
                    },
                    create.input.as_ref().clone(),
                    create.if_not_exists,
                    create.or_replace,
                )
                .await
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(view)) => {
                let query = view_query.ok_or_else(|| {
                    Error::internal("a CREATE VIEW without its query".to_string())
                })?;
                self.create_view(
                    store,
                    caller,
                    &names(context, &view.name)?,
                    &query,
                    view.input.schema().as_arrow(),
                    view.or_replace,
                )
                .await
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(drop)) => unproduced(
                self.drop_named(store, caller, context, &drop.name, drop.if_exists, false)
                    .await,
            ),
            LogicalPlan::Ddl(DdlStatement::DropView(drop)) => unproduced(
                self.drop_named(store, caller, context, &drop.name, drop.if_exists, true)
                    .await,
            ),
            LogicalPlan::Ddl(DdlStatement::CreateCatalogSchema(create)) => {
                let (catalog, schema) = match create.schema_name.split_once('.') {
                    Some((catalog, schema)) => (catalog.to_string(), schema.to_string()),
                    None => (
                        context
                            .state()
                            .config_options()
                            .catalog
                            .default_catalog
                            .clone(),
                        create.schema_name.clone(),
                    ),
                };
                let catalog = catalog::normalize_name("catalog", &catalog)?;
                let schema = catalog::normalize_name("schema", &schema)?;
                authorize(
                    store,
                    caller,
                    &Securable::catalog(&catalog),
                    Privilege::CreateSchema,
                )
                .await?;
                let created = store
                    .create_schema(
                        &NewSchema {
                            catalog,
                            name: schema,
                            comment: String::new(),
                            properties: Default::default(),
                        },
                        &caller.actor(),
                    )
                    .await;
                match created {
                    Err(err)
                        if err.code == ErrorCode::ResourceAlreadyExists && create.if_not_exists =>
                    {
                        Ok((SqlOutput::empty(), None))
                    }
                    other => other.map(|_| (SqlOutput::empty(), None)),
                }
            }
            LogicalPlan::Ddl(other) => Err(Error::invalid(format!(
                "Unsupported statement: {}",
                other.name()
            ))),
            LogicalPlan::Dml(dml) => self.modify(store, caller, context, dml).await,
            LogicalPlan::Statement(_) | LogicalPlan::Copy(_) => Err(Error::invalid(
                "Unsupported statement: tarn runs queries, CREATE TABLE/VIEW/SCHEMA, INSERT, DELETE and DROP",
            )),
            query => {
                let frame = context
                    .execute_logical_plan(query)
                    .await
                    .map_err(sql_error)?;
                let schema = Arc::new(frame.schema().as_arrow().clone());
                let (batches, truncated, files) = match (&scope.rows, scope.limits.result_bytes) {
                    (ResultRows::Files(folder), _) => (
                        Vec::new(),
                        false,
                        write_files(frame, &schema, folder).await?,
                    ),
                    (ResultRows::Channel(rows), _) => {
                        send_rows(frame, rows).await?;
                        (Vec::new(), false, Vec::new())
                    }
                    (ResultRows::InMemory, Some(limit)) => {
                        let (batches, truncated) = collect_within(frame, limit).await?;
                        (batches, truncated, Vec::new())
                    }
                    (ResultRows::InMemory, None) => {
                        (frame.collect().await.map_err(sql_error)?, false, Vec::new())
                    }
                };
                Ok((
                    SqlOutput {
                        schema,
                        batches,
                        reads: Vec::new(),
                        truncated,
                        files,
                    },
                    None,
                ))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_table_as(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        context: &SessionContext,
        table: ManagedTable,
        input: LogicalPlan,
        if_not_exists: bool,
        or_replace: bool,
    ) -> Result<(SqlOutput, Option<Produced>)> {
        let full_name = table.full_name();
        // `CREATE TABLE t` with neither columns nor a query plans a row of no columns, which
        // no Delta table can hold.
        if input.schema().fields().is_empty() {
            return Err(Error::invalid(format!(
                "Cannot create {full_name}: a table needs at least one column (give the columns \
                 or AS SELECT ...)"
            )));
        }
        let session: Arc<dyn Session> = Arc::new(context.state());
        match store
            .get_table(&table.catalog, &table.schema, &table.name)
            .await
        {
            Ok(_) if if_not_exists => return Ok((SqlOutput::empty(), None)),
            Ok(existing) if or_replace => {
                require_owner(store, caller, &Securable::table(&existing)).await?;
                let written = self
                    .write_plan(
                        &location_of(&existing)?,
                        &full_name,
                        input,
                        session,
                        PlanWrite::Replace,
                    )
                    .await?;
                store
                    .set_table_columns(
                        &table.catalog,
                        &table.schema,
                        &table.name,
                        &written.columns,
                        &caller.actor(),
                    )
                    .await?;
                return Ok((
                    inserted(written.rows)?,
                    Some(Produced {
                        target: full_name,
                        version: Some(written.version),
                        operation: "CREATE OR REPLACE TABLE AS SELECT",
                    }),
                ));
            }
            Ok(_) => {
                return Err(Error::already_exists(format!(
                    "Table already exists: {full_name}"
                )));
            }
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {}
            Err(err) => return Err(err),
        }
        authorize_create_table(store, caller, &table.catalog, &table.schema).await?;
        let table_id = new_table_id();
        let location =
            self.managed_location(&table.catalog, &table.schema, &table.name, &table_id)?;
        let written = match self
            .write_plan(&location, &full_name, input, session, PlanWrite::Create)
            .await
        {
            Ok(written) => written,
            Err(err) => {
                let _ = self.remove_managed(&location).await;
                return Err(err);
            }
        };
        self.register_managed(
            store,
            &caller.actor(),
            table,
            table_id,
            location,
            written.columns.clone(),
        )
        .await?;
        Ok((
            inserted(written.rows)?,
            Some(Produced {
                target: full_name,
                version: Some(written.version),
                operation: "CREATE TABLE AS SELECT",
            }),
        ))
    }

    async fn create_view(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        (catalog, schema, name): &(String, String, String),
        query: &str,
        columns: &Schema,
        or_replace: bool,
    ) -> Result<(SqlOutput, Option<Produced>)> {
        let full_name = format!("{catalog}.{schema}.{name}");
        authorize_create_table(store, caller, catalog, schema).await?;
        match store.get_table(catalog, schema, name).await {
            Ok(existing) if or_replace && existing.table_type == TableType::View => {
                require_owner(store, caller, &Securable::table(&existing)).await?;
                store
                    .delete_table(catalog, schema, name, &caller.actor())
                    .await?;
            }
            Ok(_) => {
                return Err(Error::already_exists(format!(
                    "Table or view already exists: {full_name}"
                )));
            }
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {}
            Err(err) => return Err(err),
        }
        store
            .create_table(
                &NewTable {
                    table_id: new_table_id(),
                    catalog: catalog.clone(),
                    schema: schema.clone(),
                    name: name.clone(),
                    table_type: TableType::View,
                    columns: columns_of_arrow(columns)?,
                    storage_location: String::new(),
                    view_definition: query.to_string(),
                    comment: String::new(),
                    properties: Default::default(),
                },
                &caller.actor(),
            )
            .await?;
        Ok((
            SqlOutput::empty(),
            Some(Produced {
                target: full_name,
                version: None,
                operation: if or_replace {
                    "CREATE OR REPLACE VIEW"
                } else {
                    "CREATE VIEW"
                },
            }),
        ))
    }

    async fn drop_named(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        context: &SessionContext,
        reference: &TableReference,
        if_exists: bool,
        view: bool,
    ) -> Result<SqlOutput> {
        let (catalog, schema, name) = names(context, reference)?;
        reach_catalog(store, caller, &catalog, true).await?;
        let table = match store.get_table(&catalog, &schema, &name).await {
            Ok(table) => table,
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist && if_exists => {
                return Ok(SqlOutput::empty());
            }
            Err(err) => return Err(err),
        };
        let is_view = table.table_type == TableType::View;
        if is_view != view {
            return Err(Error::invalid(format!(
                "{} is a {}: use DROP {}",
                table.full_name,
                if is_view { "view" } else { "table" },
                if is_view { "VIEW" } else { "TABLE" }
            )));
        }
        require_owner(store, caller, &Securable::table(&table)).await?;
        self.drop_table(store, &caller.actor(), &table).await?;
        Ok(SqlOutput::empty())
    }

    async fn modify(
        &self,
        store: &dyn MetaStore,
        caller: &Caller,
        context: &SessionContext,
        dml: DmlStatement,
    ) -> Result<(SqlOutput, Option<Produced>)> {
        let (catalog, schema, name) = names(context, &dml.table_name)?;
        reach_catalog(store, caller, &catalog, true).await?;
        let table: TableInfo = store.get_table(&catalog, &schema, &name).await?;
        if table.table_type == TableType::View {
            return Err(Error::invalid(format!(
                "{} is a view: views cannot be written to",
                table.full_name
            )));
        }
        authorize(store, caller, &Securable::table(&table), Privilege::Modify).await?;
        let location = location_of(&table)?;
        match dml.op {
            WriteOp::Insert(op) => {
                let (mode, operation) = match op {
                    InsertOp::Append => (PlanWrite::Append, "INSERT INTO"),
                    InsertOp::Overwrite => (PlanWrite::Overwrite, "INSERT OVERWRITE"),
                    InsertOp::Replace => {
                        return Err(Error::invalid(
                            "REPLACE INTO is not supported: use MERGE through the table API",
                        ));
                    }
                };
                let session: Arc<dyn Session> = Arc::new(context.state());
                let written = self
                    .write_plan(
                        &location,
                        &table.full_name,
                        dml.input.as_ref().clone(),
                        session,
                        mode,
                    )
                    .await?;
                Ok((
                    inserted(written.rows)?,
                    Some(Produced {
                        target: table.full_name,
                        version: Some(written.version),
                        operation,
                    }),
                ))
            }
            WriteOp::Delete => {
                let predicate = delete_predicate(&dml.input)?;
                let deleted = self
                    .delete_expr(&location, &table.full_name, predicate)
                    .await?;
                let rows = deleted.num_deleted_rows.unwrap_or_default() as u64;
                Ok((
                    SqlOutput::counts(&[("num_affected_rows", rows)])?,
                    Some(Produced {
                        target: table.full_name,
                        version: Some(deleted.version),
                        operation: "DELETE",
                    }),
                ))
            }
            other => Err(Error::invalid(format!(
                "Unsupported statement: {other}; tarn runs INSERT and DELETE (MERGE through the table API)"
            ))),
        }
    }
}

/// The query's rows up to `limit` bytes, and whether more were left unread. The rows are read
/// as the plan makes them, so a result far larger than the limit never sits in memory.
async fn collect_within(frame: DataFrame, limit: usize) -> Result<(Vec<RecordBatch>, bool)> {
    let mut stream = frame.execute_stream().await.map_err(sql_error)?;
    let mut batches = Vec::new();
    let mut held = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(sql_error)?;
        let size = batch.get_array_memory_size();
        if held + size <= limit {
            held += size;
            batches.push(batch);
            continue;
        }
        // The rows of this batch that still fit, at its average row size, copied out so
        // the rest of the batch's buffers can go.
        let room = limit - held;
        let mut fitting = room / size.div_ceil(batch.num_rows().max(1)).max(1);
        while fitting > 0 {
            let rows = deltalake::arrow::compute::concat_batches(
                &batch.schema(),
                &[batch.slice(0, fitting)],
            )
            .map_err(|e| Error::internal_from("cannot cut the result", e))?;
            let size = rows.get_array_memory_size();
            if size <= room {
                batches.push(rows);
                break;
            }
            // Buffers are padded: cut a little more.
            fitting = (fitting - 1).min(fitting * room / size);
        }
        return Ok((batches, true));
    }
    Ok((batches, false))
}

/// Sends the query's rows to `rows` as the plan makes them.
async fn send_rows(frame: DataFrame, rows: &tokio::sync::mpsc::Sender<RecordBatch>) -> Result<()> {
    let mut stream = frame.execute_stream().await.map_err(sql_error)?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(sql_error)?;
        rows.send(batch)
            .await
            .map_err(|_| Error::internal("the reader of a query's rows stopped"))?;
    }
    Ok(())
}

/// Writes the query's rows into Arrow IPC stream files under `folder` as the plan makes them.
async fn write_files(
    frame: DataFrame,
    schema: &SchemaRef,
    folder: &std::path::Path,
) -> Result<Vec<ResultFile>> {
    use deltalake::arrow::ipc::writer::StreamWriter;
    type Writer = StreamWriter<std::io::BufWriter<std::fs::File>>;
    fn failed(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::internal_from(format!("cannot {what} a result file"), e)
    }
    std::fs::create_dir_all(folder).map_err(|e| failed("create the folder of", e))?;
    let mut stream = frame.execute_stream().await.map_err(sql_error)?;
    let mut files = Vec::new();
    let mut open: Option<(Writer, ResultFile, usize)> = None;
    let finish = |(writer, mut file, _): (Writer, ResultFile, usize)| -> Result<ResultFile> {
        let mut buffered = writer.into_inner().map_err(|e| failed("write", e))?;
        std::io::Write::flush(&mut buffered).map_err(|e| failed("write", e))?;
        file.bytes = std::fs::metadata(&file.path)
            .map_err(|e| failed("read", e))?
            .len();
        Ok(file)
    };
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(sql_error)?;
        let (writer, file, held) = match &mut open {
            Some(current) => current,
            None => {
                let path = folder.join(format!("{:06}.arrow", files.len()));
                let created = std::fs::File::create(&path).map_err(|e| failed("create", e))?;
                let writer = StreamWriter::try_new(std::io::BufWriter::new(created), schema)
                    .map_err(|e| failed("write", e))?;
                let file = ResultFile {
                    path,
                    rows: 0,
                    bytes: 0,
                };
                open.insert((writer, file, 0))
            }
        };
        writer.write(&batch).map_err(|e| failed("write", e))?;
        file.rows += batch.num_rows();
        *held += batch.get_array_memory_size();
        if *held >= RESULT_FILE_BYTES
            && let Some(full) = open.take()
        {
            files.push(finish(full)?);
        }
    }
    if let Some(last) = open.take() {
        files.push(finish(last)?);
    }
    Ok(files)
}

/// The table an `INSERT` or `DELETE` writes, as written in the statement.
fn write_target(statement: &SqlStatement) -> Option<String> {
    match statement {
        SqlStatement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => Some(name.to_string()),
            _ => None,
        },
        SqlStatement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables,
            };
            match tables.first().map(|t| &t.relation) {
                Some(TableFactor::Table { name, .. }) => Some(name.to_string()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn inserted(rows: usize) -> Result<SqlOutput> {
    let rows = rows as u64;
    SqlOutput::counts(&[("num_affected_rows", rows), ("num_inserted_rows", rows)])
}

/// The catalog, schema and table a statement names, with the session's defaults filled in.
fn names(context: &SessionContext, reference: &TableReference) -> Result<(String, String, String)> {
    let defaults = context.state().config_options().catalog.clone();
    let full = reference
        .clone()
        .resolve(&defaults.default_catalog, &defaults.default_schema);
    Ok((
        catalog::normalize_name("catalog", &full.catalog)?,
        catalog::normalize_name("schema", &full.schema)?,
        catalog::normalize_name("name", &full.table)?,
    ))
}

/// The WHERE of a planned `DELETE`, its columns unqualified for the Delta delete; none
/// deletes every row.
fn delete_predicate(input: &LogicalPlan) -> Result<Option<Expr>> {
    let filter = match input {
        LogicalPlan::Filter(filter) => filter.predicate.clone(),
        LogicalPlan::TableScan(_) => return Ok(None),
        other => {
            return Err(Error::invalid(format!(
                "Unsupported DELETE: {}",
                other.display()
            )));
        }
    };
    let unqualified = filter
        .transform(|expr| {
            Ok(match expr {
                Expr::Column(mut column) => {
                    column.relation = None;
                    Transformed::yes(Expr::Column(column))
                }
                other => Transformed::no(other),
            })
        })
        .map_err(sql_error)?;
    Ok(Some(unqualified.data))
}

/// Puts `provider` into the session as `catalog.schema.table`.
fn register(
    context: &SessionContext,
    catalog: &str,
    schema: &str,
    table: &str,
    provider: Arc<dyn deltalake::datafusion::catalog::TableProvider>,
) -> Result<()> {
    let catalog_provider = match context.catalog(catalog) {
        Some(existing) => existing,
        None => {
            let created: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
            context.register_catalog(catalog, created.clone());
            created
        }
    };
    let schema_provider = match catalog_provider.schema(schema) {
        Some(existing) => existing,
        None => {
            let created = Arc::new(MemorySchemaProvider::new());
            catalog_provider
                .register_schema(schema, created.clone())
                .map_err(sql_error)?;
            created
        }
    };
    if !schema_provider.table_exist(table) {
        schema_provider
            .register_table(table.to_string(), provider)
            .map_err(sql_error)?;
    }
    Ok(())
}
