//! Backend-independent behaviour of the serving endpoints store.

use std::sync::Arc;

use tarn_core::ErrorCode;
use tarn_core::auth::{ObjectType, PermissionLevel, PrincipalKind};
use tarn_core::events::EventQuery;
use tarn_core::registry::Actor;
use tarn_core::serving::{EndpointConfig, ServedEntity, ServingEndpoint};
use tarn_core::store::MetaStore;

type Store = Arc<dyn MetaStore>;

fn config(version: &str) -> EndpointConfig {
    EndpointConfig {
        served_entities: vec![ServedEntity {
            entity_name: "fraud".into(),
            entity_version: Some(version.into()),
            ..ServedEntity::default()
        }],
        ..EndpointConfig::default()
    }
    .normalized("dev", "fraud-api")
    .expect("valid config")
}

pub async fn endpoints_lifecycle_grants_and_events(store: Store) {
    store.ensure_workspace("dev", "tester").await.expect("dev");
    store
        .ensure_workspace("prod", "tester")
        .await
        .expect("prod");
    let owner = store
        .create_principal("owner", PrincipalKind::User, false, None, "tester")
        .await
        .expect("owner");
    let actor = Actor {
        id: owner.id,
        name: owner.name.clone(),
    };
    let endpoint = ServingEndpoint {
        id: "ep1".into(),
        workspace: "dev".into(),
        name: "fraud-api".into(),
        creator: "owner".into(),
        creation_timestamp: 10,
        last_updated_timestamp: 10,
        config: config("1"),
        config_version: 1,
        tags: vec![],
    };
    store
        .create_endpoint(&endpoint, &actor)
        .await
        .expect("create");
    assert_eq!(
        store.get_endpoint("dev", "fraud-api").await.expect("get"),
        endpoint
    );
    let again = store
        .create_endpoint(
            &ServingEndpoint {
                id: "ep2".into(),
                ..endpoint.clone()
            },
            &actor,
        )
        .await;
    assert_eq!(
        again.expect_err("duplicate").code,
        ErrorCode::ResourceAlreadyExists
    );
    // The same name in another workspace is another endpoint.
    let in_prod = ServingEndpoint {
        id: "ep3".into(),
        workspace: "prod".into(),
        ..endpoint.clone()
    };
    store
        .create_endpoint(&in_prod, &actor)
        .await
        .expect("prod endpoint");
    assert_eq!(
        store
            .list_endpoints(Some("dev"))
            .await
            .expect("dev list")
            .len(),
        1
    );
    assert_eq!(store.list_endpoints(None).await.expect("all").len(), 2);

    // The creator manages it.
    let levels = store
        .granted_levels("dev", ObjectType::ServingEndpoint, "ep1", &[owner.id])
        .await
        .expect("levels");
    assert_eq!(levels, vec![PermissionLevel::CanManage]);

    let updated = store
        .update_endpoint_config("dev", "fraud-api", &config("2"), 20, &actor)
        .await
        .expect("update");
    assert_eq!(updated.config_version, 2);
    assert_eq!(updated.last_updated_timestamp, 20);
    assert_eq!(
        updated.config.served_entities[0].entity_version.as_deref(),
        Some("2")
    );
    assert_eq!(updated.creation_timestamp, 10);
    let missing = store
        .update_endpoint_config("dev", "nope", &config("2"), 20, &actor)
        .await;
    assert_eq!(
        missing.expect_err("missing").code,
        ErrorCode::ResourceDoesNotExist
    );

    assert_eq!(
        store
            .delete_endpoint("dev", "fraud-api", &actor)
            .await
            .expect("delete"),
        "ep1"
    );
    assert_eq!(
        store
            .get_endpoint("dev", "fraud-api")
            .await
            .expect_err("gone")
            .code,
        ErrorCode::ResourceDoesNotExist
    );
    assert!(
        store
            .granted_levels("dev", ObjectType::ServingEndpoint, "ep1", &[owner.id])
            .await
            .expect("levels")
            .is_empty(),
        "grants go with the endpoint"
    );
    assert!(store.get_endpoint("prod", "fraud-api").await.is_ok());

    let events = store
        .events(&EventQuery {
            workspace: Some("dev".into()),
            entity: Some("serving_endpoint".into()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let actions: Vec<String> = events
        .iter()
        .map(|e| e.change.store().expect("stored").action)
        .collect();
    assert_eq!(actions, vec!["created", "updated", "deleted"]);
    assert!(events.iter().all(|e| e.actor == "owner"));
}
