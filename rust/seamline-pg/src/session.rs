//! A plain connection for the adapter's small queries (the catalog, the snapshot coordinator), so
//! that a reconcile on the Rust reader needs no second driver: the ADBC driver cost about 0.4 CPU
//! seconds to import and 60 ms of CPU per connection (it loads the server's type catalog).
//!
//! Parameters go as text, typed by the server (as libpq's PQexecParams with text parameters does);
//! results are decoded by the COPY reader's decoders into one record batch.

use std::sync::Arc;

use arrow_array::RecordBatch;
use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, Format, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Client;

use crate::{connect, decoders_for, Connected, PgError};

/// One connection, driven on its own single-threaded runtime while a call runs.
pub struct Session {
    // dropped before the runtime: the connection task then sees the client gone
    client: Client,
    runtime: tokio::runtime::Runtime,
}

/// A parameter sent as text (None: NULL), for the server to parse as the type it infers.
#[derive(Debug)]
struct TextParam<'a>(Option<&'a str>);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// A result value in its binary wire form, whatever its type (None: NULL).
struct Wire<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Wire<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Wire(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Wire(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

impl Session {
    /// Connect with the libpq keywords `params` (see `connect`).
    pub fn connect(params: &[(String, String)]) -> Result<Session, PgError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PgError::Unavailable(format!("cannot start a runtime: {e}")))?;
        let Connected { client, .. } = runtime.block_on(connect(params))?;
        Ok(Session { client, runtime })
    }

    /// Run statements without results (BEGIN, SET ...).
    pub fn execute(&self, sql: &str) -> Result<(), PgError> {
        Ok(self.runtime.block_on(self.client.batch_execute(sql))?)
    }

    /// The columns `sql` returns: name, type name (a domain's base type) and type modifier (-1:
    /// none).
    pub fn columns(&self, sql: &str) -> Result<Vec<(String, String, i32)>, PgError> {
        let statement = self.runtime.block_on(self.client.prepare(sql))?;
        Ok(statement
            .columns()
            .iter()
            .map(|c| {
                let mut ty = c.type_();
                while let tokio_postgres::types::Kind::Domain(base) = ty.kind() {
                    ty = base;
                }
                (c.name().to_string(), ty.name().to_string(), c.type_modifier())
            })
            .collect())
    }

    /// The rows of `sql` with `$1..n` bound to `params` (text), as one record batch.
    pub fn query(&self, sql: &str, params: &[Option<String>]) -> Result<RecordBatch, PgError> {
        self.runtime.block_on(async {
            let statement = self.client.prepare(sql).await?;
            let (schema, mut decoders) = decoders_for(&statement)?;
            let bound: Vec<TextParam<'_>> = params.iter().map(|p| TextParam(p.as_deref())).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = self.client.query(&statement, &refs).await?;
            for row in &rows {
                for (i, decoder) in decoders.iter_mut().enumerate() {
                    let Wire(value) = row.try_get::<_, Wire<'_>>(i)?;
                    decoder.append(value).map_err(PgError::Decode)?;
                }
            }
            let columns = decoders
                .iter_mut()
                .map(|d| d.finish(0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(PgError::Decode)?;
            let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
            RecordBatch::try_new_with_options(Arc::new(schema), columns, &options)
                .map_err(|e| PgError::Decode(e.to_string()))
        })
    }
}
