//! Managing endpoints, called alike by the HTTP API and (next) bundles and job tasks: each use
//! case checks the caller's permissions, loads an endpoint's models before storing its config
//! (a model tarn cannot score is refused, with the operator named, and nothing is stored), and
//! stores the change with its event before the running endpoints follow it.

use tarn_core::auth::{ObjectType, PermissionLevel};
use tarn_core::caller::Caller;
use tarn_core::catalog::Privilege;
use tarn_core::entities::KeyValue;
use tarn_core::serving::{EndpointConfig, ServingEndpoint, validate_endpoint_name};
use tarn_core::{Error, ErrorCode, Result};
use tarn_identity::access;

use crate::endpoints::Endpoints;

impl Endpoints {
    /// The endpoint `name` of the caller's workspace, when the caller's level on it includes
    /// `level`.
    pub async fn endpoint_for(
        &self,
        caller: &Caller,
        name: &str,
        level: PermissionLevel,
    ) -> Result<ServingEndpoint> {
        let store = self.context.store.as_ref();
        let endpoint = store.get_endpoint(&caller.workspace, name).await?;
        tarn_identity::require(
            store,
            &caller.workspace,
            &caller.principal,
            ObjectType::ServingEndpoint,
            &endpoint.id,
            level,
        )
        .await?;
        Ok(endpoint)
    }

    /// Creates an endpoint owned by the caller, who must be able to read every model it serves,
    /// and starts serving it.
    pub async fn create(
        &self,
        caller: &Caller,
        name: String,
        config: EndpointConfig,
        tags: Vec<KeyValue>,
    ) -> Result<ServingEndpoint> {
        validate_endpoint_name(&name)?;
        let config = config.normalized(&caller.workspace, &name)?;
        self.check_access(caller, &config).await?;
        let store = self.context.store.as_ref();
        match store.get_endpoint(&caller.workspace, &name).await {
            Ok(_) => {
                return Err(Error::already_exists(format!(
                    "Serving endpoint '{name}' already exists."
                )));
            }
            Err(err) if err.code == ErrorCode::ResourceDoesNotExist => {}
            Err(err) => return Err(err),
        }
        let now = tarn_core::ids::now_millis();
        let endpoint = ServingEndpoint {
            id: tarn_core::ids::hex32(rand::random()),
            workspace: caller.workspace.clone(),
            name,
            creator: caller.principal.name.clone(),
            creation_timestamp: now,
            last_updated_timestamp: now,
            config,
            config_version: 1,
            tags,
        };
        let entities = self.prepare(&endpoint).await?;
        store.create_endpoint(&endpoint, &caller.actor()).await?;
        self.install(endpoint.clone(), entities).await?;
        Ok(endpoint)
    }

    /// Replaces the config of an endpoint the caller manages; the endpoint switches to it
    /// without failing a request.
    pub async fn update_config(
        &self,
        caller: &Caller,
        name: &str,
        config: EndpointConfig,
    ) -> Result<ServingEndpoint> {
        let current = self
            .endpoint_for(caller, name, PermissionLevel::CanManage)
            .await?;
        let config = config.normalized(&caller.workspace, name)?;
        self.check_access(caller, &config).await?;
        let next = ServingEndpoint {
            config: config.clone(),
            config_version: current.config_version + 1,
            ..current
        };
        let entities = self.prepare(&next).await?;
        let stored = self
            .context
            .store
            .update_endpoint_config(
                &caller.workspace,
                name,
                &config,
                tarn_core::ids::now_millis(),
                &caller.actor(),
            )
            .await?;
        self.install(stored.clone(), entities).await?;
        Ok(stored)
    }

    /// Deletes an endpoint the caller manages and stops serving it.
    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<()> {
        self.endpoint_for(caller, name, PermissionLevel::CanManage)
            .await?;
        self.context
            .store
            .delete_endpoint(&caller.workspace, name, &caller.actor())
            .await?;
        self.remove(&caller.workspace, name);
        Ok(())
    }

    /// Its owner (the caller) must be able to read every model the config serves, and the
    /// label table it joins into the predictions.
    async fn check_access(&self, caller: &Caller, config: &EndpointConfig) -> Result<()> {
        if let Some(labels) = config
            .auto_capture_config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
        {
            tarn_lake::access::table_for(
                self.context.store.as_ref(),
                caller,
                &labels.table_name,
                Privilege::Select,
            )
            .await?;
        }
        for entity in &config.served_entities {
            access::registered_model(
                self.context.store.as_ref(),
                caller,
                &entity.entity_name,
                PermissionLevel::CanRead,
            )
            .await?;
        }
        Ok(())
    }
}
