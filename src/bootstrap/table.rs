//! The invites table: pk/sk keys, on-demand capacity, three indexes and TTL on `ttl`.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ProvisionedThroughput, ScalarAttributeType, TableDescription, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use super::report::{resource, BootstrapReport, Outcome};
use super::table_layout as layout;
use super::{error_code, BootstrapError, WaitOptions};

/// One global secondary index the worker queries.
struct IndexSpec {
    name: &'static str,
    hash: (&'static str, ScalarAttributeType),
    range: (&'static str, ScalarAttributeType),
    projection: ProjectionType,
}

fn indexes() -> [IndexSpec; 3] {
    [
        IndexSpec {
            name: layout::OPEN_BY_EXPIRY_INDEX,
            hash: (layout::OPEN_SHARD, ScalarAttributeType::S),
            range: (layout::OPEN_EXPIRES_AT, ScalarAttributeType::N),
            projection: ProjectionType::KeysOnly,
        },
        IndexSpec {
            name: layout::BY_STATUS_INDEX,
            hash: (layout::STATUS, ScalarAttributeType::S),
            range: (layout::UPDATED_MS, ScalarAttributeType::N),
            projection: ProjectionType::All,
        },
        IndexSpec {
            name: layout::UNPUBLISHED_INDEX,
            hash: (layout::OUTBOX_SHARD, ScalarAttributeType::S),
            range: (layout::UPDATED_MS, ScalarAttributeType::N),
            projection: ProjectionType::KeysOnly,
        },
    ]
}

/// Ensures the table and adds its row to `report`.
pub(super) async fn ensure(
    ddb: &Client,
    name: &str,
    wait: WaitOptions,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    let what = format!("{} {name}", resource::TABLE);
    if name.is_empty() {
        return Err(BootstrapError::Config {
            key: "table.name",
            reason: "is empty".into(),
        });
    }
    let mut notes = Vec::new();
    let outcome = match describe(ddb, &what, name).await? {
        Some(_) => Outcome::Found,
        None => create(ddb, &what, name).await?,
    };
    let mut table = wait_ready(ddb, &what, name, wait).await?;
    check_keys(&what, &table)?;

    for index in indexes() {
        match table
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some(index.name))
        {
            Some(existing) => check_index(
                &what,
                &index,
                existing.key_schema(),
                existing.projection().and_then(|p| p.projection_type()),
            )?,
            None => {
                add_index(ddb, &what, name, &index, &table).await?;
                notes.push(format!("added index {}", index.name));
                table = wait_ready(ddb, &what, name, wait).await?;
            }
        }
    }

    if let Some(note) = ensure_ttl(ddb, &what, name).await? {
        if outcome != Outcome::Created {
            notes.push(note);
        }
    }
    report.push(resource::TABLE, name, outcome, notes);
    Ok(())
}

async fn describe(
    ddb: &Client,
    what: &str,
    name: &str,
) -> Result<Option<TableDescription>, BootstrapError> {
    match ddb.describe_table().table_name(name).send().await {
        Ok(out) => Ok(out.table().cloned()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(BootstrapError::aws(what, "DescribeTable", e)),
    }
}

/// Creates the table; `Found` if someone else created it in the meantime.
async fn create(ddb: &Client, what: &str, name: &str) -> Result<Outcome, BootstrapError> {
    let mut request = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(what, layout::PK, KeyType::Hash)?)
        .key_schema(key(what, layout::SK, KeyType::Range)?);
    let mut defined: Vec<&str> = Vec::new();
    let mut define =
        |request: aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
         (attr, kind): (&'static str, ScalarAttributeType)| {
            if defined.contains(&attr) {
                return Ok(request);
            }
            defined.push(attr);
            Ok::<_, BootstrapError>(request.attribute_definitions(definition(what, attr, kind)?))
        };
    request = define(request, (layout::PK, ScalarAttributeType::S))?;
    request = define(request, (layout::SK, ScalarAttributeType::S))?;
    for index in indexes() {
        request = define(request, index.hash.clone())?;
        request = define(request, index.range.clone())?;
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(index.name)
            .key_schema(key(what, index.hash.0, KeyType::Hash)?)
            .key_schema(key(what, index.range.0, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(index.projection.clone())
                    .build(),
            )
            .build()
            .map_err(|e| BootstrapError::build(what, e))?;
        request = request.global_secondary_indexes(gsi);
    }
    match request.send().await {
        Ok(_) => Ok(Outcome::Created),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(Outcome::Found)
        }
        Err(e) => Err(BootstrapError::aws(what, "CreateTable", e)),
    }
}

fn key(what: &str, attr: &str, kind: KeyType) -> Result<KeySchemaElement, BootstrapError> {
    KeySchemaElement::builder()
        .attribute_name(attr)
        .key_type(kind)
        .build()
        .map_err(|e| BootstrapError::build(what, e))
}

fn definition(
    what: &str,
    attr: &str,
    kind: ScalarAttributeType,
) -> Result<AttributeDefinition, BootstrapError> {
    AttributeDefinition::builder()
        .attribute_name(attr)
        .attribute_type(kind)
        .build()
        .map_err(|e| BootstrapError::build(what, e))
}

/// `(hash, range)` attribute names of a key schema.
fn key_names(schema: &[KeySchemaElement]) -> (Option<&str>, Option<&str>) {
    let of = |kind: KeyType| {
        schema
            .iter()
            .find(|k| *k.key_type() == kind)
            .map(|k| k.attribute_name())
    };
    (of(KeyType::Hash), of(KeyType::Range))
}

fn check_keys(what: &str, table: &TableDescription) -> Result<(), BootstrapError> {
    let found = key_names(table.key_schema());
    if found != (Some(layout::PK), Some(layout::SK)) {
        return Err(BootstrapError::Unusable {
            resource: what.to_string(),
            reason: format!(
                "has key schema {found:?}; the worker needs {} (hash) and {} (range)",
                layout::PK,
                layout::SK
            ),
        });
    }
    Ok(())
}

fn check_index(
    what: &str,
    index: &IndexSpec,
    schema: &[KeySchemaElement],
    projection: Option<&ProjectionType>,
) -> Result<(), BootstrapError> {
    let found = key_names(schema);
    if found != (Some(index.hash.0), Some(index.range.0)) {
        return Err(BootstrapError::Unusable {
            resource: what.to_string(),
            reason: format!(
                "index {} has keys {found:?}; the worker needs {} (hash) and {} (range)",
                index.name, index.hash.0, index.range.0
            ),
        });
    }
    // An index that projects everything serves a query that needs only keys; not the reverse.
    if index.projection == ProjectionType::All && projection != Some(&ProjectionType::All) {
        return Err(BootstrapError::Unusable {
            resource: what.to_string(),
            reason: format!(
                "index {} projects {:?}; the worker needs ALL",
                index.name,
                projection.map(|p| p.as_str()).unwrap_or("nothing")
            ),
        });
    }
    Ok(())
}

async fn add_index(
    ddb: &Client,
    what: &str,
    name: &str,
    index: &IndexSpec,
    table: &TableDescription,
) -> Result<(), BootstrapError> {
    let mut action = CreateGlobalSecondaryIndexAction::builder()
        .index_name(index.name)
        .key_schema(key(what, index.hash.0, KeyType::Hash)?)
        .key_schema(key(what, index.range.0, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(index.projection.clone())
                .build(),
        );
    // A table with provisioned capacity needs capacity for the index too: give it the table's.
    let on_demand = table.billing_mode_summary().and_then(|b| b.billing_mode())
        == Some(&BillingMode::PayPerRequest);
    if let Some(capacity) = table.provisioned_throughput().filter(|_| !on_demand) {
        if let (Some(read), Some(write)) = (
            capacity.read_capacity_units().filter(|n| *n > 0),
            capacity.write_capacity_units().filter(|n| *n > 0),
        ) {
            let throughput = ProvisionedThroughput::builder()
                .read_capacity_units(read)
                .write_capacity_units(write)
                .build()
                .map_err(|e| BootstrapError::build(what, e))?;
            action = action.provisioned_throughput(throughput);
        }
    }
    let action = action.build().map_err(|e| BootstrapError::build(what, e))?;
    ddb.update_table()
        .table_name(name)
        .attribute_definitions(definition(what, index.hash.0, index.hash.1.clone())?)
        .attribute_definitions(definition(what, index.range.0, index.range.1.clone())?)
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(action).build(),
        )
        .send()
        .await
        .map_err(|e| {
            BootstrapError::aws(format!("{what} index {}", index.name), "UpdateTable", e)
        })?;
    Ok(())
}

/// Waits until the table and all its indexes are ACTIVE.
async fn wait_ready(
    ddb: &Client,
    what: &str,
    name: &str,
    wait: WaitOptions,
) -> Result<TableDescription, BootstrapError> {
    let started = Instant::now();
    let mut poll = wait.first_poll;
    loop {
        let table = describe(ddb, what, name)
            .await?
            .ok_or_else(|| BootstrapError::Unusable {
                resource: what.to_string(),
                reason: "disappeared while bootstrap was waiting for it".into(),
            })?;
        let status = table
            .table_status()
            .cloned()
            .unwrap_or(TableStatus::Creating);
        let pending_index = table
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_status().is_some_and(|s| *s != IndexStatus::Active));
        match (&status, pending_index) {
            (TableStatus::Active, None) => return Ok(table),
            (TableStatus::Active | TableStatus::Creating | TableStatus::Updating, pending) => {
                if started.elapsed() >= wait.timeout {
                    let status = match pending {
                        Some(index) => format!(
                            "index {} {}",
                            index.index_name().unwrap_or("?"),
                            index.index_status().map(|s| s.as_str()).unwrap_or("?")
                        ),
                        None => status.as_str().to_string(),
                    };
                    return Err(BootstrapError::NotReady {
                        resource: what.to_string(),
                        status,
                        waited_seconds: started.elapsed().as_secs(),
                    });
                }
                tokio::time::sleep(poll).await;
                poll = (poll.mul_f32(1.5))
                    .min(wait.max_poll)
                    .max(Duration::from_millis(1));
            }
            (other, _) => {
                return Err(BootstrapError::Unusable {
                    resource: what.to_string(),
                    reason: format!("is {}", other.as_str()),
                })
            }
        }
    }
}

/// Turns on TTL for `ttl` unless it is on already; returns a note when it changed something or
/// found TTL on another attribute.
async fn ensure_ttl(
    ddb: &Client,
    what: &str,
    name: &str,
) -> Result<Option<String>, BootstrapError> {
    let out = ddb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| BootstrapError::aws(what, "DescribeTimeToLive", e))?;
    let current = out.time_to_live_description();
    let status = current.and_then(|d| d.time_to_live_status());
    let attribute = current.and_then(|d| d.attribute_name());
    if matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        return Ok(match attribute {
            Some(a) if a != layout::TTL => Some(format!(
                "TTL is on attribute {a}, not {}; expired invites will not be removed",
                layout::TTL
            )),
            _ => None,
        });
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name(layout::TTL)
        .enabled(true)
        .build()
        .map_err(|e| BootstrapError::build(what, e))?;
    match ddb
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => Ok(Some(format!("TTL enabled on {}", layout::TTL))),
        Err(e) if is_already_enabled(error_code(&e), &e) => Ok(None),
        Err(e) => Err(BootstrapError::aws(what, "UpdateTimeToLive", e)),
    }
}

/// DynamoDB answers a second UpdateTimeToLive with `ValidationException: TimeToLive is already enabled`.
fn is_already_enabled<E: aws_smithy_types::error::metadata::ProvideErrorMetadata, R>(
    code: Option<&str>,
    err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> bool {
    let message = err
        .as_service_error()
        .and_then(|e| e.message())
        .unwrap_or("");
    code == Some("ValidationException") && message.to_ascii_lowercase().contains("already enabled")
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::create_table::CreateTableOutput;
    use aws_sdk_dynamodb::operation::describe_table::{DescribeTableError, DescribeTableOutput};
    use aws_sdk_dynamodb::operation::describe_time_to_live::DescribeTimeToLiveOutput;
    use aws_sdk_dynamodb::operation::update_table::UpdateTableOutput;
    use aws_sdk_dynamodb::operation::update_time_to_live::UpdateTimeToLiveError;
    use aws_sdk_dynamodb::types::error::ResourceNotFoundException;
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndexDescription, TimeToLiveDescription};
    use aws_smithy_mocks::mock;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::bootstrap::test_support::mocked;

    fn fast() -> WaitOptions {
        WaitOptions {
            timeout: Duration::from_millis(50),
            first_poll: Duration::from_millis(5),
            max_poll: Duration::from_millis(10),
        }
    }

    fn table(status: TableStatus, index_names: &[&str]) -> TableDescription {
        let mut builder = TableDescription::builder()
            .table_name("invites")
            .table_status(status)
            .key_schema(key("t", "pk", KeyType::Hash).unwrap())
            .key_schema(key("t", "sk", KeyType::Range).unwrap());
        for spec in indexes()
            .into_iter()
            .filter(|i| index_names.contains(&i.name))
        {
            builder = builder.global_secondary_indexes(
                GlobalSecondaryIndexDescription::builder()
                    .index_name(spec.name)
                    .index_status(IndexStatus::Active)
                    .key_schema(key("t", spec.hash.0, KeyType::Hash).unwrap())
                    .key_schema(key("t", spec.range.0, KeyType::Range).unwrap())
                    .projection(
                        Projection::builder()
                            .projection_type(spec.projection)
                            .build(),
                    )
                    .build(),
            );
        }
        builder.build()
    }

    fn ttl(status: TimeToLiveStatus, attribute: &str) -> aws_smithy_mocks::Rule {
        let attribute = attribute.to_string();
        mock!(Client::describe_time_to_live).then_output(move || {
            DescribeTimeToLiveOutput::builder()
                .time_to_live_description(
                    TimeToLiveDescription::builder()
                        .time_to_live_status(status.clone())
                        .attribute_name(attribute.clone())
                        .build(),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn creates_the_table_with_three_indexes_and_ttl() {
        let describe = mock!(Client::describe_table)
            .sequence()
            .error(|| {
                DescribeTableError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            })
            .output(|| {
                DescribeTableOutput::builder()
                    .table(table(TableStatus::Creating, &[]))
                    .build()
            })
            .output(|| {
                DescribeTableOutput::builder()
                    .table(table(
                        TableStatus::Active,
                        &["open-by-expiry", "by-status", "unpublished"],
                    ))
                    .build()
            })
            .build();
        let create = mock!(Client::create_table)
            .match_requests(|req| {
                let names: Vec<_> = req
                    .global_secondary_indexes()
                    .iter()
                    .map(|i| i.index_name())
                    .collect();
                let defined: Vec<_> = req
                    .attribute_definitions()
                    .iter()
                    .map(|d| d.attribute_name())
                    .collect();
                req.billing_mode() == Some(&BillingMode::PayPerRequest)
                    && names == ["open-by-expiry", "by-status", "unpublished"]
                    && defined
                        == [
                            "pk",
                            "sk",
                            "open_shard",
                            "open_expires_at",
                            "status",
                            "updated_ms",
                            "outbox_shard",
                        ]
            })
            .then_output(|| CreateTableOutput::builder().build());
        let enable = mock!(Client::update_time_to_live)
            .match_requests(|req| {
                req.time_to_live_specification()
                    .is_some_and(|s| s.attribute_name() == "ttl" && s.enabled())
            })
            .then_output(|| {
                aws_sdk_dynamodb::operation::update_time_to_live::UpdateTimeToLiveOutput::builder()
                    .build()
            });
        let ddb = mocked!(
            aws_sdk_dynamodb,
            describe,
            create,
            ttl(TimeToLiveStatus::Disabled, ""),
            enable
        );
        let mut report = BootstrapReport::new("s".into());

        ensure(&ddb, "invites", fast(), &mut report).await.unwrap();

        assert_eq!((create.num_calls(), enable.num_calls()), (1, 1));
        let row = report.get(resource::TABLE).unwrap();
        assert_eq!((row.outcome, row.notes.len()), (Outcome::Created, 0));
    }

    #[tokio::test]
    async fn adds_a_missing_index_to_an_existing_table() {
        let describe = mock!(Client::describe_table)
            .sequence()
            .output(|| {
                DescribeTableOutput::builder()
                    .table(table(TableStatus::Active, &["open-by-expiry", "by-status"]))
                    .build()
            })
            .times(2)
            .output(|| {
                DescribeTableOutput::builder()
                    .table(table(
                        TableStatus::Active,
                        &["open-by-expiry", "by-status", "unpublished"],
                    ))
                    .build()
            })
            .build();
        let update = mock!(Client::update_table)
            .match_requests(|req| {
                req.global_secondary_index_updates()
                    .first()
                    .and_then(|u| u.create())
                    .is_some_and(|c| {
                        c.index_name() == "unpublished" && c.provisioned_throughput().is_none()
                    })
            })
            .then_output(|| UpdateTableOutput::builder().build());
        let ddb = mocked!(
            aws_sdk_dynamodb,
            describe,
            update,
            ttl(TimeToLiveStatus::Enabled, "ttl")
        );
        let mut report = BootstrapReport::new("s".into());

        ensure(&ddb, "invites", fast(), &mut report).await.unwrap();

        assert_eq!(update.num_calls(), 1);
        let row = report.get(resource::TABLE).unwrap();
        assert_eq!(
            (row.outcome, row.notes.as_slice()),
            (Outcome::Found, &["added index unpublished".to_string()][..])
        );
    }

    #[tokio::test]
    async fn gives_up_on_a_table_that_stays_creating() {
        let describe = mock!(Client::describe_table).then_output(|| {
            DescribeTableOutput::builder()
                .table(table(TableStatus::Creating, &[]))
                .build()
        });
        let ddb = mocked!(aws_sdk_dynamodb, describe);
        let err = ensure(
            &ddb,
            "invites",
            fast(),
            &mut BootstrapReport::new("s".into()),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, BootstrapError::NotReady { status, .. } if status == "CREATING"),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("table invites: not ready"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn rejects_a_table_with_other_keys() {
        let describe = mock!(Client::describe_table).then_output(|| {
            let t = TableDescription::builder()
                .table_name("invites")
                .table_status(TableStatus::Active)
                .key_schema(key("t", "id", KeyType::Hash).unwrap())
                .build();
            DescribeTableOutput::builder().table(t).build()
        });
        let ddb = mocked!(aws_sdk_dynamodb, describe);
        let err = ensure(
            &ddb,
            "invites",
            fast(),
            &mut BootstrapReport::new("s".into()),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("table invites: has key schema"), "{err}");
    }

    #[tokio::test]
    async fn ttl_already_enabled_is_not_an_error() {
        let describe = mock!(Client::describe_table).then_output(|| {
            DescribeTableOutput::builder()
                .table(table(
                    TableStatus::Active,
                    &["open-by-expiry", "by-status", "unpublished"],
                ))
                .build()
        });
        let race = mock!(Client::update_time_to_live).then_error(|| {
            UpdateTimeToLiveError::generic(
                ErrorMetadata::builder()
                    .code("ValidationException")
                    .message("TimeToLive is already enabled")
                    .build(),
            )
        });
        let ddb = mocked!(
            aws_sdk_dynamodb,
            describe,
            ttl(TimeToLiveStatus::Disabled, ""),
            race
        );
        let mut report = BootstrapReport::new("s".into());
        ensure(&ddb, "invites", fast(), &mut report).await.unwrap();
        assert_eq!(race.num_calls(), 1);
        assert!(report.get(resource::TABLE).unwrap().notes.is_empty());
    }

    #[test]
    fn an_index_projecting_only_keys_cannot_serve_by_status() {
        let [_, by_status, unpublished] = indexes();
        let schema = [
            key("t", "status", KeyType::Hash).unwrap(),
            key("t", "updated_ms", KeyType::Range).unwrap(),
        ];
        let err = check_index(
            "table t",
            &by_status,
            &schema,
            Some(&ProjectionType::KeysOnly),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("index by-status projects"),
            "{err}"
        );
        let schema = [
            key("t", "outbox_shard", KeyType::Hash).unwrap(),
            key("t", "updated_ms", KeyType::Range).unwrap(),
        ];
        assert!(check_index("table t", &unpublished, &schema, Some(&ProjectionType::All)).is_ok());
    }
}
