//! The delivery-awareness setup checks against the local stack (moto). `#[ignore]`d:
//! scripts/test.sh runs them. Resource names are unique: the server is shared, never reset.

mod support;

use invite_worker::adapters::probe::AwsProbe;
use invite_worker::adapters::ses_suppression::SesSuppressionList;
use invite_worker::domain::EmailAddress;
use invite_worker::error::SetupCause;
use invite_worker::ports::SuppressionList;

#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn the_configuration_set_check_finds_an_existing_set_and_names_a_missing_one() {
    let sdk = support::stack_sdk().await;
    let name = support::unique("cc-set");
    aws_sdk_sesv2::Client::new(&sdk)
        .create_configuration_set()
        .configuration_set_name(&name)
        .send()
        .await
        .expect("CreateConfigurationSet");
    let probe = AwsProbe::new(&sdk);
    assert_eq!(probe.configuration_set(&name).await, Ok(()));
    let missing = probe
        .configuration_set(&format!("{name}-missing"))
        .await
        .expect_err("no such set");
    assert_eq!(missing.setup, Some(SetupCause::NotFound), "{missing}");
}

/// moto has no GetSuppressedDestination and answers a bare 404 page: read as "not on the list",
/// so on the local stack nothing is ever suppressed and the check passes.
#[ignore = "needs the local stack: scripts/test.sh"]
#[tokio::test]
async fn on_the_local_stack_nothing_is_suppressed() {
    let sdk = support::stack_sdk().await;
    let address = EmailAddress::parse(&support::recipient("cc-supp")).unwrap();
    let list = SesSuppressionList::new(aws_sdk_sesv2::Client::new(&sdk));
    assert_eq!(list.suppressed(&address).await, Ok(None));
    assert_eq!(AwsProbe::new(&sdk).suppression_list(&address).await, Ok(()));
}
