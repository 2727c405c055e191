//! The workspace files API's use cases (`/api/2.0/workspace/...`): import, export, status,
//! list, mkdirs, delete. Any member of a workspace reads and writes its shared tree; a user's
//! home (`/Users/<name>`) is that user's and the admins' alone, as in Databricks. Tasks name
//! these files in `python_file` and `notebook_path`; the executor materializes them.

use std::path::{Path, PathBuf};

use tarn_core::auth::Principal;
use tarn_core::caller::Caller;
use tarn_core::files::{self, MAX_FILE_SIZE, ObjectType, WorkspaceObject};
use tarn_core::store::MetaStore;
use tarn_core::{Error, Result};

/// The first line of a Databricks source-format Python notebook.
const NOTEBOOK_HEADER: &str = "# Databricks notebook source";

/// The most files, and bytes, written out beside a task's file; past either, only the file.
const MAX_FILES_BESIDE: usize = 2000;
const MAX_BYTES_BESIDE: i64 = 200 * 1024 * 1024;

/// How `workspace/import` is to read the content it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportFormat {
    /// A notebook's source in `language` (the API's default); a file without a language.
    #[default]
    Source,
    /// A notebook when it looks like one (a `.py` with the source header, stored without
    /// the extension), a file otherwise.
    Auto,
    /// A file, as is.
    Raw,
}

impl ImportFormat {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "SOURCE" => Ok(Self::Source),
            "AUTO" => Ok(Self::Auto),
            "RAW" => Ok(Self::Raw),
            other => Err(Error::invalid(format!(
                "Import format {other} is not supported here: SOURCE, AUTO or RAW"
            ))),
        }
    }
}

/// One `workspace/import`.
pub struct Import<'a> {
    pub path: &'a str,
    pub content: &'a [u8],
    pub format: ImportFormat,
    pub language: Option<&'a str>,
    pub overwrite: bool,
}

/// Whether `principal` may read and write `path` (normalized): everyone in the workspace
/// outside users' homes; in `/Users/<name>`, that user and admins.
fn may_access(principal: &Principal, path: &str) -> bool {
    let mut parts = path.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("Users"), Some(owner)) => principal.is_admin || owner == principal.name,
        _ => true,
    }
}

fn checked_path(principal: &Principal, path: &str) -> Result<String> {
    let path = files::normalize_path(path)?;
    if !may_access(principal, &path) {
        return Err(Error::permission_denied(format!(
            "{} cannot access {path}: it is in another user's home folder",
            principal.name
        )));
    }
    Ok(path)
}

pub async fn import(
    store: &dyn MetaStore,
    caller: &Caller,
    request: Import<'_>,
) -> Result<WorkspaceObject> {
    let mut path = checked_path(&caller.principal, request.path)?;
    if request.content.len() > MAX_FILE_SIZE {
        return Err(Error::invalid(format!(
            "The content is {} bytes; a workspace file is at most {MAX_FILE_SIZE}",
            request.content.len()
        )));
    }
    let language = request.language.map(str::to_ascii_uppercase);
    if let Some(language) = &language
        && !matches!(language.as_str(), "PYTHON" | "SQL" | "SCALA" | "R")
    {
        return Err(Error::invalid(format!("Unknown language {language}")));
    }
    let object_type = match request.format {
        ImportFormat::Raw => ObjectType::File,
        ImportFormat::Source if language.is_some() => ObjectType::Notebook,
        ImportFormat::Source => ObjectType::File,
        ImportFormat::Auto => {
            if path.ends_with(".py") && request.content.starts_with(NOTEBOOK_HEADER.as_bytes()) {
                path.truncate(path.len() - ".py".len());
                ObjectType::Notebook
            } else {
                ObjectType::File
            }
        }
    };
    let language = match object_type {
        ObjectType::Notebook => Some(language.unwrap_or_else(|| "PYTHON".to_string())),
        _ => None,
    };
    store
        .put_workspace_file(
            &caller.workspace,
            &path,
            object_type,
            language.as_deref(),
            request.content,
            request.overwrite,
        )
        .await
}

/// A file's or notebook's bytes, with what it is.
pub async fn export(
    store: &dyn MetaStore,
    caller: &Caller,
    path: &str,
) -> Result<(WorkspaceObject, Vec<u8>)> {
    let object = status(store, caller, path).await?;
    if object.object_type == ObjectType::Directory {
        return Err(Error::invalid(format!(
            "Path ({}) is a directory; export takes a file or notebook",
            object.path
        )));
    }
    let content = store
        .workspace_file_content(&caller.workspace, &object.path)
        .await?;
    Ok((object, content))
}

pub async fn status(store: &dyn MetaStore, caller: &Caller, path: &str) -> Result<WorkspaceObject> {
    let path = checked_path(&caller.principal, path)?;
    store
        .workspace_object(&caller.workspace, &path)
        .await?
        .ok_or_else(|| Error::not_found(format!("Path ({path}) doesn't exist.")))
}

/// What a directory holds (a file's listing is the file), without the homes of other users.
pub async fn list(
    store: &dyn MetaStore,
    caller: &Caller,
    path: &str,
) -> Result<Vec<WorkspaceObject>> {
    let object = status(store, caller, path).await?;
    if object.object_type != ObjectType::Directory {
        return Ok(vec![object]);
    }
    let mut objects = store
        .list_workspace_objects(&caller.workspace, &object.path, false)
        .await?;
    objects.retain(|object| may_access(&caller.principal, &object.path));
    Ok(objects)
}

pub async fn mkdirs(store: &dyn MetaStore, caller: &Caller, path: &str) -> Result<()> {
    let path = checked_path(&caller.principal, path)?;
    store.make_workspace_dirs(&caller.workspace, &path).await
}

pub async fn delete(
    store: &dyn MetaStore,
    caller: &Caller,
    path: &str,
    recursive: bool,
) -> Result<()> {
    let path = checked_path(&caller.principal, path)?;
    store
        .delete_workspace_object(&caller.workspace, &path, recursive)
        .await
}

/// Where a task's `python_file` or `notebook_path` is on this machine. A path the workspace
/// holds (readable by the run's principal) is written out with the files beside it, so the
/// task imports its siblings as it would from a bundle; any other absolute path is a local
/// file. `folder` is where this task run's copy goes.
pub async fn materialize(
    store: &dyn MetaStore,
    workspace: &str,
    run_as: &str,
    given: &str,
    folder: &Path,
) -> Result<Option<PathBuf>> {
    let Ok(path) = files::normalize_path(given) else {
        return Ok(None);
    };
    let Some(object) = store.workspace_object(workspace, &path).await? else {
        return Ok(None);
    };
    if object.object_type == ObjectType::Directory {
        return Err(Error::invalid(format!(
            "{given} is a workspace directory, not a file"
        )));
    }
    // Only now: a task naming a local file costs one read of the store, not two.
    let run_as = &store.active_principal(run_as).await?;
    if !may_access(run_as, &path) {
        return Err(Error::permission_denied(format!(
            "The run's principal {} cannot read {path}",
            run_as.name
        )));
    }
    // The files beside it, as a bundle's sources are; not a whole home or shared folder.
    let directory = files::parent(&path);
    let mut beside = Vec::new();
    let depth = directory.matches('/').count();
    let top_or_home =
        directory == "/" || depth == 1 || (depth == 2 && directory.starts_with("/Users/"));
    if !top_or_home {
        beside = store
            .list_workspace_objects(workspace, directory, true)
            .await?;
        beside.retain(|object| {
            object.object_type != ObjectType::Directory && may_access(run_as, &object.path)
        });
    }
    let total: i64 = beside.iter().map(|object| object.size).sum();
    if beside.len() > MAX_FILES_BESIDE || total > MAX_BYTES_BESIDE {
        beside.clear();
    }
    if !beside.iter().any(|object| object.path == path) {
        beside.push(object.clone());
    }
    let local = |stored: &str| folder.join(stored.trim_start_matches('/'));
    for object in beside {
        let content = store
            .workspace_file_content(workspace, &object.path)
            .await?;
        let target = local(&object.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| Error::internal_from("cannot write out workspace files", err))?;
        }
        std::fs::write(&target, content)
            .map_err(|err| Error::internal_from("cannot write out workspace files", err))?;
    }
    let mut target = local(&path);
    // A notebook is stored without its extension; Python runs it as a `.py` file.
    if object.object_type == ObjectType::Notebook && target.extension().is_none() {
        let with_extension = target.with_extension("py");
        std::fs::rename(&target, &with_extension)
            .map_err(|err| Error::internal_from("cannot write out a notebook", err))?;
        target = with_extension;
    }
    Ok(Some(target))
}
