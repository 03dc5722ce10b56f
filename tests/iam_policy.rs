//! Each role's IAM policy in `deploy/cloudformation.yaml` grants exactly the AWS actions its
//! commands call: `WorkerPolicy` what `run` calls, `SchedulerPolicy` what `cleanup` and
//! `reconcile` call, `OperatorPolicy` what `dlq`, `enqueue`, `invites` and `config check` call.
//! Every SDK call site under `src/` is assigned to the roles whose commands reach it
//! ([`CALL_SITES`], by file and enclosing function); each policy grants the actions of its call
//! sites and nothing else.
//!
//! How it works, without a YAML or Rust parser:
//! - The Rust sources under `src/` are read as text (test modules and comments removed) and
//!   searched for fluent SDK calls, `.operation_name()`, from [`OPERATIONS`], a table of
//!   snake_case operation names of the four SDK crates and the IAM actions each one needs.
//!   `src/bootstrap.rs` and `src/bootstrap/` are skipped: bootstrap is an operator tool with its
//!   own permissions (docs/deployment.md).
//! - Each policy resource of the template is cut out as text, and every `service:Action`
//!   under an `Action:` key is collected. CloudFormation short-form tags (`!If`, `!Sub`,
//!   `!GetAtt`, `!Ref`) are only ever in resources and conditions, never in action names, so
//!   they need no special handling; conditional statements count as granted.
//!
//! When the code starts calling a new operation, add it to [`OPERATIONS`] if it is not there,
//! assign its call site to the roles that reach it in [`CALL_SITES`], and grant its action in
//! those roles' policies. Until every module has landed, [`NOT_YET_CALLED`] lists
//! actions the policy grants ahead of the code that will call them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// (SDK crate, snake_case fluent operation, IAM actions it is authorized by).
///
/// Batch operations are authorized by the single-message action (there is no
/// `sqs:DeleteMessageBatch` action). SES v2 `SendEmail` with raw content is authorized as
/// `ses:SendRawEmail` as well as `ses:SendEmail`. Operations the worker must not call (the
/// `create_*` calls of bootstrap, for instance) are listed too, so that calling one from worker
/// code fails this test instead of failing in production with AccessDenied.
const OPERATIONS: &[(&str, &str, &[&str])] = &[
    // Amazon SQS
    ("aws_sdk_sqs", "receive_message", &["sqs:ReceiveMessage"]),
    ("aws_sdk_sqs", "delete_message", &["sqs:DeleteMessage"]),
    (
        "aws_sdk_sqs",
        "delete_message_batch",
        &["sqs:DeleteMessage"],
    ),
    (
        "aws_sdk_sqs",
        "change_message_visibility",
        &["sqs:ChangeMessageVisibility"],
    ),
    (
        "aws_sdk_sqs",
        "change_message_visibility_batch",
        &["sqs:ChangeMessageVisibility"],
    ),
    ("aws_sdk_sqs", "send_message", &["sqs:SendMessage"]),
    ("aws_sdk_sqs", "send_message_batch", &["sqs:SendMessage"]),
    (
        "aws_sdk_sqs",
        "get_queue_attributes",
        &["sqs:GetQueueAttributes"],
    ),
    ("aws_sdk_sqs", "get_queue_url", &["sqs:GetQueueUrl"]),
    ("aws_sdk_sqs", "purge_queue", &["sqs:PurgeQueue"]),
    ("aws_sdk_sqs", "list_queues", &["sqs:ListQueues"]),
    (
        "aws_sdk_sqs",
        "list_dead_letter_source_queues",
        &["sqs:ListDeadLetterSourceQueues"],
    ),
    (
        "aws_sdk_sqs",
        "start_message_move_task",
        &["sqs:StartMessageMoveTask"],
    ),
    ("aws_sdk_sqs", "create_queue", &["sqs:CreateQueue"]),
    (
        "aws_sdk_sqs",
        "set_queue_attributes",
        &["sqs:SetQueueAttributes"],
    ),
    ("aws_sdk_sqs", "delete_queue", &["sqs:DeleteQueue"]),
    ("aws_sdk_sqs", "tag_queue", &["sqs:TagQueue"]),
    // Amazon DynamoDB
    ("aws_sdk_dynamodb", "get_item", &["dynamodb:GetItem"]),
    ("aws_sdk_dynamodb", "put_item", &["dynamodb:PutItem"]),
    ("aws_sdk_dynamodb", "update_item", &["dynamodb:UpdateItem"]),
    ("aws_sdk_dynamodb", "delete_item", &["dynamodb:DeleteItem"]),
    ("aws_sdk_dynamodb", "query", &["dynamodb:Query"]),
    ("aws_sdk_dynamodb", "scan", &["dynamodb:Scan"]),
    (
        "aws_sdk_dynamodb",
        "batch_get_item",
        &["dynamodb:BatchGetItem"],
    ),
    (
        "aws_sdk_dynamodb",
        "batch_write_item",
        &["dynamodb:BatchWriteItem"],
    ),
    (
        "aws_sdk_dynamodb",
        "transact_get_items",
        &["dynamodb:GetItem"],
    ),
    (
        "aws_sdk_dynamodb",
        "transact_write_items",
        &[
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:ConditionCheckItem",
        ],
    ),
    (
        "aws_sdk_dynamodb",
        "describe_table",
        &["dynamodb:DescribeTable"],
    ),
    ("aws_sdk_dynamodb", "list_tables", &["dynamodb:ListTables"]),
    (
        "aws_sdk_dynamodb",
        "create_table",
        &["dynamodb:CreateTable"],
    ),
    (
        "aws_sdk_dynamodb",
        "update_table",
        &["dynamodb:UpdateTable"],
    ),
    (
        "aws_sdk_dynamodb",
        "delete_table",
        &["dynamodb:DeleteTable"],
    ),
    (
        "aws_sdk_dynamodb",
        "update_time_to_live",
        &["dynamodb:UpdateTimeToLive"],
    ),
    (
        "aws_sdk_dynamodb",
        "describe_time_to_live",
        &["dynamodb:DescribeTimeToLive"],
    ),
    (
        "aws_sdk_dynamodb",
        "update_continuous_backups",
        &["dynamodb:UpdateContinuousBackups"],
    ),
    // Amazon Cognito user pools
    (
        "aws_sdk_cognitoidentityprovider",
        "describe_user_pool",
        &["cognito-idp:DescribeUserPool"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_create_user",
        &["cognito-idp:AdminCreateUser"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_get_user",
        &["cognito-idp:AdminGetUser"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_set_user_password",
        &["cognito-idp:AdminSetUserPassword"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_delete_user",
        &["cognito-idp:AdminDeleteUser"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_add_user_to_group",
        &["cognito-idp:AdminAddUserToGroup"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_remove_user_from_group",
        &["cognito-idp:AdminRemoveUserFromGroup"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_list_groups_for_user",
        &["cognito-idp:AdminListGroupsForUser"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_update_user_attributes",
        &["cognito-idp:AdminUpdateUserAttributes"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_disable_user",
        &["cognito-idp:AdminDisableUser"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_enable_user",
        &["cognito-idp:AdminEnableUser"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_reset_user_password",
        &["cognito-idp:AdminResetUserPassword"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_user_global_sign_out",
        &["cognito-idp:AdminUserGlobalSignOut"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_initiate_auth",
        &["cognito-idp:AdminInitiateAuth"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "admin_respond_to_auth_challenge",
        &["cognito-idp:AdminRespondToAuthChallenge"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "list_users",
        &["cognito-idp:ListUsers"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "list_groups",
        &["cognito-idp:ListGroups"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "get_group",
        &["cognito-idp:GetGroup"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "create_group",
        &["cognito-idp:CreateGroup"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "create_user_pool",
        &["cognito-idp:CreateUserPool"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "update_user_pool",
        &["cognito-idp:UpdateUserPool"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "delete_user_pool",
        &["cognito-idp:DeleteUserPool"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "list_user_pools",
        &["cognito-idp:ListUserPools"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "create_user_pool_client",
        &["cognito-idp:CreateUserPoolClient"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "describe_user_pool_client",
        &["cognito-idp:DescribeUserPoolClient"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "initiate_auth",
        &["cognito-idp:InitiateAuth"],
    ),
    (
        "aws_sdk_cognitoidentityprovider",
        "respond_to_auth_challenge",
        &["cognito-idp:RespondToAuthChallenge"],
    ),
    // Amazon SES v2
    (
        "aws_sdk_sesv2",
        "send_email",
        &["ses:SendEmail", "ses:SendRawEmail"],
    ),
    ("aws_sdk_sesv2", "send_bulk_email", &["ses:SendBulkEmail"]),
    (
        "aws_sdk_sesv2",
        "get_email_identity",
        &["ses:GetEmailIdentity"],
    ),
    (
        "aws_sdk_sesv2",
        "list_email_identities",
        &["ses:ListEmailIdentities"],
    ),
    (
        "aws_sdk_sesv2",
        "create_email_identity",
        &["ses:CreateEmailIdentity"],
    ),
    (
        "aws_sdk_sesv2",
        "delete_email_identity",
        &["ses:DeleteEmailIdentity"],
    ),
    ("aws_sdk_sesv2", "get_account", &["ses:GetAccount"]),
    (
        "aws_sdk_sesv2",
        "get_configuration_set",
        &["ses:GetConfigurationSet"],
    ),
    (
        "aws_sdk_sesv2",
        "get_suppressed_destination",
        &["ses:GetSuppressedDestination"],
    ),
    (
        "aws_sdk_sesv2",
        "create_configuration_set",
        &["ses:CreateConfigurationSet"],
    ),
    (
        "aws_sdk_sesv2",
        "create_configuration_set_event_destination",
        &["ses:CreateConfigurationSetEventDestination"],
    ),
];

/// Operation names common enough outside the SDKs (`url.query()`) that a call only counts in a
/// file that names the operation's SDK crate.
const AMBIGUOUS: &[&str] = &["query", "scan"];

/// Actions the policy grants ahead of the code that will call them, while the modules that call
/// them are still being merged (see the issue "Operating it: deployment on AWS"). Each entry
/// names its caller. An entry whose action is now called fails the test: delete it. This list
/// must end up empty.
const NOT_YET_CALLED: &[(&str, &str)] = &[];

const TEMPLATE: &str = "deploy/cloudformation.yaml";

/// Who runs which commands, each with its own managed policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// `run`.
    Worker,
    /// `cleanup`, `reconcile`.
    Scheduler,
    /// `dlq`, `enqueue`, `invites`, `config check`.
    Operator,
}
use Role::{Operator, Scheduler, Worker};

/// Each role's policy resource in the template.
const POLICIES: &[(Role, &str)] = &[
    (Worker, "WorkerPolicy"),
    (Scheduler, "SchedulerPolicy"),
    (Operator, "OperatorPolicy"),
];

/// (file, enclosing function, the roles whose commands reach the SDK calls in it). Reviewed by
/// hand from the commands' wiring: `run` builds the SQS queue adapter, the invite service
/// (Cognito, DynamoDB, mail, lifecycle publisher); `cleanup`/`reconcile` build the invite service
/// without the queue; `dlq`/`enqueue` build `adapters::sqs::SqsQueues` (the queue adapter
/// at any queue URL: `receive_from`/`send_batch`/`delete_from`/`change_visibility`); `invites` the DynamoDB store
/// (load, query); `config check` its own reads and the Cognito pool profile.
const CALL_SITES: &[(&str, &str, &[Role])] = &[
    (
        "src/adapters/cognito.rs",
        "disable_user",
        &[Worker, Scheduler],
    ),
    (
        "src/adapters/cognito.rs",
        "enable_user",
        &[Worker, Scheduler],
    ),
    (
        "src/adapters/dynamo/budget.rs",
        "take",
        &[Worker, Scheduler],
    ),
    ("src/adapters/probe.rs", "queue", &[Worker, Operator]),
    (
        "src/adapters/probe.rs",
        "table",
        &[Worker, Scheduler, Operator],
    ),
    (
        "src/adapters/probe.rs",
        "identity_verified",
        &[Worker, Operator],
    ),
    ("src/adapters/probe.rs", "ses_access", &[Operator]),
    (
        "src/adapters/probe.rs",
        "configuration_set",
        &[Worker, Operator],
    ),
    // The suppression list: the invite service reads it (run, and cleanup/reconcile, which
    // build the same service); `config check` probes it through the same adapter.
    (
        "src/adapters/ses_suppression.rs",
        "suppressed",
        &[Worker, Scheduler, Operator],
    ),
    (
        "src/adapters/cognito.rs",
        "describe",
        &[Worker, Scheduler, Operator],
    ),
    (
        "src/adapters/cognito.rs",
        "create_user",
        &[Worker, Scheduler],
    ),
    ("src/adapters/cognito.rs", "get_user", &[Worker, Scheduler]),
    (
        "src/adapters/cognito.rs",
        "set_temporary_password",
        &[Worker, Scheduler],
    ),
    (
        "src/adapters/cognito.rs",
        "delete_user",
        &[Worker, Scheduler],
    ),
    (
        "src/adapters/cognito.rs",
        "add_user_to_group",
        &[Worker, Scheduler],
    ),
    (
        "src/adapters/dynamo.rs",
        "load",
        &[Worker, Scheduler, Operator],
    ),
    ("src/adapters/dynamo.rs", "save", &[Worker, Scheduler]),
    (
        "src/adapters/dynamo.rs",
        "query",
        &[Worker, Scheduler, Operator],
    ),
    ("src/adapters/ses.rs", "send", &[Worker, Scheduler]),
    (
        "src/adapters/sqs_publisher.rs",
        "publish",
        &[Worker, Scheduler],
    ),
    ("src/adapters/sqs.rs", "receive_from", &[Worker, Operator]),
    ("src/adapters/sqs.rs", "delete_from", &[Worker, Operator]),
    ("src/adapters/sqs.rs", "send_batch", &[Operator]),
    (
        "src/adapters/sqs.rs",
        "change_visibility",
        &[Worker, Operator],
    ),
    ("src/adapters/sqs.rs", "dead_letter", &[Worker]),
    ("src/adapters/sqs.rs", "messages_left", &[Worker]),
];

/// (policy, statement Sid, actions that statement must not grant): the rights the split is for.
const FORBIDDEN: &[(&str, &str, &[&str])] = &[
    // A compromised worker cannot inject invite events...
    ("WorkerPolicy", "InboundQueue", &["sqs:SendMessage"]),
    // ...nor read, replay or purge dead letters (reading the DLQ's attributes, for the start-up
    // check that it exists, shows no message).
    (
        "WorkerPolicy",
        "DeadLetterQueue",
        &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
        ],
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Operator tools with their own permissions, not the worker's.
fn excluded(relative: &Path) -> bool {
    relative == Path::new("src/bootstrap.rs") || relative.starts_with("src/bootstrap")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Replaces `//` comments (line and doc comments) with spaces, keeping line numbers and string
/// literals (a `//` inside `"https://..."` is not a comment).
fn strip_line_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut cut = line.len();
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if b == b'"' {
                in_string = true;
            } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
                cut = i;
                break;
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// Blanks out items under `#[cfg(test)]` (test modules, test helpers): tests need no production
/// permissions. Newlines are kept so line numbers still match the file.
fn strip_test_items(source: &str) -> String {
    let mut text = source.to_string();
    let marker = "#[cfg(test)]";
    let mut from = 0;
    while let Some(found) = text[from..].find(marker) {
        let start = from + found;
        let after = start + marker.len();
        let rest = &text[after..];
        let end = match (rest.find(';'), rest.find('{')) {
            // `#[cfg(test)] use ...;` or `mod foo_tests;` (that file is skipped by its name,
            // see `is_test_file`).
            (Some(semi), Some(brace)) if semi < brace => after + semi + 1,
            (Some(semi), None) => after + semi + 1,
            (_, Some(brace)) => matching_brace(&text, after + brace).unwrap_or(text.len()),
            (None, None) => text.len(),
        };
        // Same byte length (a multi-byte char becomes that many spaces), same newlines.
        let blank: String = text[start..end]
            .chars()
            .map(|c| {
                if c == '\n' {
                    "\n".to_string()
                } else {
                    " ".repeat(c.len_utf8())
                }
            })
            .collect();
        text.replace_range(start..end, &blank);
        from = end;
    }
    text
}

/// The index just past the `}` that closes the `{` at `open`.
fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Files that hold only tests (`foo_tests.rs`, `tests.rs`, `tests/...` inside src).
fn is_test_file(relative: &Path) -> bool {
    let name = relative
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    name == "tests"
        || name.ends_with("_tests")
        || relative.components().any(|c| c.as_os_str() == "tests")
}

/// One SDK call found in the sources.
#[derive(Debug)]
struct Call {
    file: String,
    line: usize,
    /// The function the call is in (the last `fn name` before it).
    function: String,
    operation: &'static str,
    actions: &'static [&'static str],
}

/// Every fluent SDK call `.operation()` in the worker's sources.
fn calls_in_sources() -> Vec<Call> {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut calls = Vec::new();
    for path in files {
        let relative = path
            .strip_prefix(&root)
            .expect("under the crate root")
            .to_path_buf();
        if excluded(&relative) || is_test_file(&relative) {
            continue;
        }
        let raw =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let text = strip_test_items(&strip_line_comments(&raw));
        for (crate_name, operation, actions) in OPERATIONS {
            if AMBIGUOUS.contains(operation) && !text.contains(crate_name) {
                continue;
            }
            let needle = format!(".{operation}()");
            for (index, line) in text.lines().enumerate() {
                if contains_call(line, &needle) {
                    calls.push(Call {
                        file: relative.display().to_string(),
                        line: index + 1,
                        function: enclosing_fn(&text, index),
                        operation,
                        actions,
                    });
                }
            }
        }
    }
    calls
}

/// The name in the last `fn name` at or before line `index` (0-based) of `text`.
fn enclosing_fn(text: &str, index: usize) -> String {
    let lines: Vec<&str> = text.lines().take(index + 1).collect();
    lines
        .iter()
        .rev()
        .find_map(|line| {
            let (_, rest) = line.split_once("fn ")?;
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .unwrap_or_default()
}

/// The actions of the statement with `Sid: sid` in a policy section.
fn statement_actions(policy: &str, sid: &str) -> BTreeSet<String> {
    let start = policy
        .find(&format!("Sid: {sid}\n"))
        .unwrap_or_else(|| panic!("no statement {sid}"));
    let rest = &policy[start + 4..];
    let end = rest.find("Sid: ").unwrap_or(rest.len());
    granted_actions(&rest[..end])
}

/// `line` calls the operation: `needle` is `.op()`, so a longer name (`.send_message_batch()`,
/// `.resend_message()`) does not match `.send_message()`.
fn contains_call(line: &str, needle: &str) -> bool {
    line.contains(needle)
}

/// The text of one top-level resource of the template (its key line and everything indented
/// under it).
fn resource_section<'a>(template: &'a str, name: &str) -> &'a str {
    let key = format!("  {name}:");
    let start = template
        .lines()
        .scan(0usize, |offset, line| {
            let here = *offset;
            *offset += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| line.trim_end() == key)
        .map(|(offset, _)| offset)
        .unwrap_or_else(|| panic!("{TEMPLATE} has no resource {name}"));
    let body = &template[start..];
    let mut end = body.len();
    let mut offset = 0;
    for (i, line) in body.lines().enumerate() {
        if i > 0 {
            let indent = line.len() - line.trim_start().len();
            let content = line.trim();
            if !content.is_empty() && !content.starts_with('#') && indent <= 2 {
                end = offset;
                break;
            }
        }
        offset += line.len() + 1;
    }
    &body[..end]
}

/// `service:Action` names under `Action:` keys, in block (`- sqs:Foo`), flow (`[sqs:Foo]`) or
/// scalar (`Action: sqs:Foo`) form, quoted or not.
fn granted_actions(policy: &str) -> BTreeSet<String> {
    assert!(
        !policy.contains("NotAction"),
        "the worker policy must list actions, not exclude them (NotAction)"
    );
    let mut actions = BTreeSet::new();
    let mut action_indent: Option<usize> = None;
    for line in policy.lines() {
        let indent = line.len() - line.trim_start().len();
        let content = line.trim();
        let content = content.split(" #").next().unwrap_or_default();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(key_indent) = action_indent {
            let continues =
                indent > key_indent || (indent == key_indent && content.starts_with("- "));
            if continues {
                collect_actions(content, &mut actions);
                continue;
            }
            action_indent = None;
        }
        let key = content.trim_start_matches("- ");
        if let Some(rest) = key.strip_prefix("Action:") {
            action_indent = Some(indent + (content.len() - key.len()));
            collect_actions(rest, &mut actions);
        }
    }
    actions
}

fn collect_actions(text: &str, out: &mut BTreeSet<String>) {
    for token in
        text.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ',' | '"' | '\''))
    {
        if let Some((service, action)) = token.split_once(':') {
            let service_ok =
                !service.is_empty() && service.chars().all(|c| c.is_ascii_lowercase() || c == '-');
            let action_ok = action
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase() || c == '*')
                && action
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '*');
            if service_ok && action_ok {
                out.insert(format!("{service}:{action}"));
            }
        }
    }
}

/// The roles of a call site, from [`CALL_SITES`].
fn roles_of(call: &Call) -> Option<&'static [Role]> {
    CALL_SITES
        .iter()
        .find(|(file, function, _)| *file == call.file && *function == call.function)
        .map(|(_, _, roles)| *roles)
}

#[test]
fn every_sdk_call_site_is_assigned_to_the_roles_that_reach_it() {
    let calls = calls_in_sources();
    let unassigned: Vec<String> = calls
        .iter()
        .filter(|c| roles_of(c).is_none())
        .map(|c| format!("{}:{} {}() .{}()", c.file, c.line, c.function, c.operation))
        .collect();
    assert!(
        unassigned.is_empty(),
        "SDK calls in no entry of CALL_SITES in tests/iam_policy.rs: {unassigned:?}\n\
         (add (file, function, roles) for each, and grant its actions in those roles' policies)"
    );
    let stale: Vec<_> = CALL_SITES
        .iter()
        .filter(|(file, function, _)| {
            !calls
                .iter()
                .any(|c| c.file == *file && c.function == *function)
        })
        .map(|(file, function, _)| format!("{file} {function}()"))
        .collect();
    assert!(
        stale.is_empty(),
        "CALL_SITES entries with no SDK call any more: {stale:?}"
    );
}

#[test]
fn each_role_policy_grants_exactly_what_its_commands_call() {
    let calls = calls_in_sources();
    let template = fs::read_to_string(root().join(TEMPLATE)).expect("read the template");
    let pending: BTreeMap<&str, &str> = NOT_YET_CALLED.iter().copied().collect();
    let mut failures = Vec::new();
    for (role, resource) in POLICIES {
        let mut called: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for call in calls
            .iter()
            .filter(|c| roles_of(c).is_some_and(|r| r.contains(role)))
        {
            for action in call.actions {
                called
                    .entry(action.to_string())
                    .or_default()
                    .push(format!("{}:{} .{}()", call.file, call.line, call.operation));
            }
        }
        let granted = granted_actions(resource_section(&template, resource));
        println!("{resource} ({role:?}): the code calls {}", called.len());
        for (action, sites) in &called {
            let mark = if granted.contains(action) { " " } else { "!" };
            println!(" {mark} {action:<36} {}", sites.join(", "));
        }
        let wildcards: Vec<_> = granted.iter().filter(|a| a.contains('*')).collect();
        if !wildcards.is_empty() {
            failures.push(format!("{resource} grants wildcard actions: {wildcards:?}"));
        }
        let missing: Vec<_> = called.keys().filter(|a| !granted.contains(*a)).collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{resource} lacks actions its commands call: {missing:?} (grant them, or fix CALL_SITES)"
            ));
        }
        let beyond: Vec<_> = granted
            .iter()
            .filter(|a| !called.contains_key(*a) && !pending.contains_key(a.as_str()))
            .collect();
        if !beyond.is_empty() {
            failures.push(format!(
                "{resource} grants actions none of its commands call: {beyond:?}"
            ));
        }
    }
    let stale: Vec<_> = pending
        .keys()
        .filter(|a| calls.iter().any(|c| c.actions.contains(a)))
        .collect();
    if !stale.is_empty() {
        failures.push(format!(
            "these actions are called now; delete them from NOT_YET_CALLED: {stale:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_worker_cannot_inject_events_or_touch_dead_letters() {
    let template = fs::read_to_string(root().join(TEMPLATE)).expect("read the template");
    for (resource, sid, forbidden) in FORBIDDEN {
        let actions = statement_actions(resource_section(&template, resource), sid);
        let granted: Vec<_> = forbidden.iter().filter(|a| actions.contains(**a)).collect();
        assert!(
            granted.is_empty(),
            "{resource} statement {sid} grants {granted:?}"
        );
    }
    // The statement cutter reads what it should.
    let worker = resource_section(&template, "WorkerPolicy");
    assert_eq!(
        statement_actions(worker, "DeadLetterQueue"),
        BTreeSet::from([
            "sqs:GetQueueAttributes".to_string(),
            "sqs:SendMessage".to_string()
        ])
    );
    let operator = resource_section(&template, "OperatorPolicy");
    assert!(statement_actions(operator, "InboundQueue").contains("sqs:SendMessage"));
}

#[test]
fn every_operation_maps_to_known_services_once() {
    let mut seen = BTreeSet::new();
    for (crate_name, operation, actions) in OPERATIONS {
        assert!(
            seen.insert((*crate_name, *operation)),
            "{operation} is listed twice"
        );
        assert!(!actions.is_empty(), "{operation} has no IAM action");
        let prefix = match *crate_name {
            "aws_sdk_sqs" => "sqs:",
            "aws_sdk_dynamodb" => "dynamodb:",
            "aws_sdk_cognitoidentityprovider" => "cognito-idp:",
            "aws_sdk_sesv2" => "ses:",
            other => panic!("unknown SDK crate {other}"),
        };
        for action in *actions {
            assert!(
                action.starts_with(prefix),
                "{operation} maps to {action}, not a {prefix} action"
            );
        }
    }
}

#[test]
fn the_scanner_finds_calls_and_skips_comments_and_tests() {
    let source = r#"
use aws_sdk_sqs::Client;
// self.client.purge_queue().send() is only a comment
fn receive(client: &Client) {
    let url = "https://sqs.example//x"; client
        .receive_message()
        .send();
}
#[cfg(test)]
mod tests {
    fn setup() { let _ = client.create_queue().send(); if true { } }
}
fn after() { client.delete_message_batch().send(); }
"#;
    let text = strip_test_items(&strip_line_comments(source));
    assert!(text.contains(".receive_message()"));
    assert!(
        text.contains("https://sqs.example//x"),
        "a // inside a string is not a comment"
    );
    assert!(!text.contains("purge_queue"), "comments are skipped");
    assert!(!text.contains("create_queue"), "test modules are skipped");
    assert!(
        text.contains(".delete_message_batch()"),
        "code after a test module is scanned"
    );
    assert_eq!(
        text.lines().count(),
        source.lines().count(),
        "line numbers are kept"
    );
    let unicode = "#[cfg(test)]\nmod t { const S: &str = \"\u{e9}\u{2014}\"; }\nfn f() { c.get_item().send(); }\n";
    let stripped = strip_test_items(unicode);
    assert_eq!(
        stripped.len(),
        unicode.len(),
        "multi-byte text is blanked byte for byte"
    );
    assert!(stripped.contains(".get_item()"));
    assert!(contains_call("    .send_message()", ".send_message()"));
    assert!(!contains_call(
        "    .send_message_batch()",
        ".send_message()"
    ));
}

#[test]
fn the_policy_parser_reads_every_yaml_form() {
    let template = r#"Resources:
  Other:
    Type: AWS::SQS::Queue
  WorkerPolicy:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Sid: Block
            Action:
              - sqs:ReceiveMessage
              - "dynamodb:GetItem"  # quoted, with a comment
            Resource: !Sub "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/x"
          - !If
            - Cond
            - Action: [cognito-idp:AdminGetUser, 'ses:SendEmail']
              Resource: !GetAtt Pool.Arn
            - !Ref AWS::NoValue
          - Action: ses:GetEmailIdentity
            Condition:
              StringEquals:
                ses:FromAddress: a@example.com
            Resource: "*"
          - Action:
            - sqs:SendMessage
            Effect: Allow
  After:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Action: sqs:PurgeQueue
"#;
    let granted = granted_actions(resource_section(template, "WorkerPolicy"));
    let want: BTreeSet<String> = [
        "sqs:ReceiveMessage",
        "dynamodb:GetItem",
        "cognito-idp:AdminGetUser",
        "ses:SendEmail",
        "ses:GetEmailIdentity",
        "sqs:SendMessage",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(granted, want);
}
