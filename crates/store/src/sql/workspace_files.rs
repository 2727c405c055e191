//! Workspace files: one row per file, notebook or directory, by workspace and normalized path,
//! with its parent's path so a directory's listing is one indexed read. The root is implied.

use super::*;
use tarn_core::files::{self, ObjectType, WorkspaceObject};

/// The columns of an object without its content.
const OBJECT_COLUMNS: &str =
    "object_id, path, object_type, language, size, created_at, modified_at";

fn row_object(row: &db::DbRow) -> std::result::Result<WorkspaceObject, sqlx::Error> {
    Ok(WorkspaceObject {
        path: row.try_get("path")?,
        object_type: decode_with(row, "object_type", ObjectType::parse)?,
        language: row.try_get("language")?,
        object_id: row.try_get("object_id")?,
        size: row.try_get("size")?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
    })
}

fn root() -> WorkspaceObject {
    WorkspaceObject {
        path: "/".to_string(),
        object_type: ObjectType::Directory,
        language: None,
        object_id: 0,
        size: 0,
        created_at: 0,
        modified_at: 0,
    }
}

fn path_not_found(path: &str) -> Error {
    Error::not_found(format!("Path ({path}) doesn't exist."))
}

async fn object_in<'e, E>(
    executor: E,
    workspace: &str,
    path: &str,
) -> Result<Option<WorkspaceObject>>
where
    E: db::Executor<'e>,
{
    if path == "/" {
        return Ok(Some(root()));
    }
    let row = db::query(sqlx::AssertSqlSafe(format!(
        "SELECT {OBJECT_COLUMNS} FROM workspace_files WHERE workspace = $1 AND path = $2"
    )))
    .bind(workspace)
    .bind(path)
    .fetch_optional(executor)
    .await
    .map_err(db_error)?;
    row.map(|row| row_object(&row))
        .transpose()
        .map_err(db_error)
}

/// Makes `path` and the directories above it, inside `tx`; a file in the way is refused.
async fn make_dirs(tx: &mut Tx<'_>, workspace: &str, path: &str, now: i64) -> Result<()> {
    let mut wanted = files::ancestors(path);
    if path != "/" {
        wanted.push(path.to_string());
    }
    for directory in wanted {
        match object_in(&mut **tx, workspace, &directory).await? {
            Some(found) if found.object_type == ObjectType::Directory => continue,
            Some(_) => {
                return Err(Error::invalid(format!(
                    "Path ({directory}) is a file, not a directory"
                )));
            }
            None => {}
        }
        db::query(
            "INSERT INTO workspace_files (workspace, path, parent, object_type, size, \
             created_at, modified_at) VALUES ($1, $2, $3, 'DIRECTORY', 0, $4, $4)",
        )
        .bind(workspace)
        .bind(&directory)
        .bind(files::parent(&directory))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

#[async_trait]
impl WorkspaceFileStore for Store {
    async fn put_workspace_file(
        &self,
        workspace: &str,
        path: &str,
        object_type: ObjectType,
        language: Option<&str>,
        content: &[u8],
        overwrite: bool,
    ) -> Result<WorkspaceObject> {
        if path == "/" || object_type == ObjectType::Directory {
            return Err(Error::invalid(format!("Path ({path}) cannot hold a file")));
        }
        let now = now_millis();
        let mut tx = self.begin().await?;
        make_dirs(&mut tx, workspace, files::parent(path), now).await?;
        match object_in(&mut *tx, workspace, path).await? {
            Some(found) if found.object_type == ObjectType::Directory => {
                return Err(Error::already_exists(format!(
                    "Path ({path}) already exists as a directory."
                )));
            }
            Some(_) if !overwrite => {
                return Err(Error::already_exists(format!(
                    "Path ({path}) already exists."
                )));
            }
            _ => {}
        }
        let row = db::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO workspace_files (workspace, path, parent, object_type, language, \
             content, size, created_at, modified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (workspace, path) DO UPDATE SET object_type = excluded.object_type, \
             language = excluded.language, content = excluded.content, size = excluded.size, \
             modified_at = excluded.modified_at RETURNING {OBJECT_COLUMNS}"
        )))
        .bind(workspace)
        .bind(path)
        .bind(files::parent(path))
        .bind(object_type.as_str())
        .bind(language)
        .bind(content)
        .bind(content.len() as i64)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let stored = row_object(&row).map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(stored)
    }

    async fn make_workspace_dirs(&self, workspace: &str, path: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        make_dirs(&mut tx, workspace, path, now_millis()).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn workspace_object(
        &self,
        workspace: &str,
        path: &str,
    ) -> Result<Option<WorkspaceObject>> {
        object_in(&self.read, workspace, path).await
    }

    async fn workspace_file_content(&self, workspace: &str, path: &str) -> Result<Vec<u8>> {
        let content: Option<Option<Vec<u8>>> = db::query_scalar(
            "SELECT content FROM workspace_files WHERE workspace = $1 AND path = $2",
        )
        .bind(workspace)
        .bind(path)
        .fetch_optional(&self.read)
        .await
        .map_err(db_error)?;
        match content {
            Some(Some(content)) => Ok(content),
            Some(None) => Err(Error::invalid(format!(
                "Path ({path}) is a directory, not a file"
            ))),
            None => Err(path_not_found(path)),
        }
    }

    async fn list_workspace_objects(
        &self,
        workspace: &str,
        directory: &str,
        recursive: bool,
    ) -> Result<Vec<WorkspaceObject>> {
        match object_in(&self.read, workspace, directory).await? {
            Some(found) if found.object_type == ObjectType::Directory => {}
            Some(_) => {
                return Err(Error::invalid(format!(
                    "Path ({directory}) is a file, not a directory"
                )));
            }
            None => return Err(path_not_found(directory)),
        }
        let rows = if recursive {
            let under = if directory == "/" {
                "/".to_string()
            } else {
                format!("{directory}/")
            };
            // Paths under the directory: those starting with `under`, compared as bytes.
            db::query(sqlx::AssertSqlSafe(format!(
                "SELECT {OBJECT_COLUMNS} FROM workspace_files WHERE workspace = $1 \
                 AND substr(path, 1, $2) = $3 ORDER BY path{}",
                collate()
            )))
            .bind(workspace)
            .bind(under.chars().count() as i32)
            .bind(&under)
            .fetch_all(&self.read)
            .await
        } else {
            db::query(sqlx::AssertSqlSafe(format!(
                "SELECT {OBJECT_COLUMNS} FROM workspace_files WHERE workspace = $1 \
                 AND parent = $2 ORDER BY path{}",
                collate()
            )))
            .bind(workspace)
            .bind(directory)
            .fetch_all(&self.read)
            .await
        }
        .map_err(db_error)?;
        rows.iter()
            .map(row_object)
            .collect::<std::result::Result<_, _>>()
            .map_err(db_error)
    }

    async fn delete_workspace_object(
        &self,
        workspace: &str,
        path: &str,
        recursive: bool,
    ) -> Result<()> {
        if path == "/" {
            return Err(Error::invalid("The workspace's root cannot be deleted"));
        }
        let mut tx = self.begin().await?;
        let found = object_in(&mut *tx, workspace, path)
            .await?
            .ok_or_else(|| path_not_found(path))?;
        if found.object_type == ObjectType::Directory {
            let under = format!("{path}/");
            let held: i64 = db::query_scalar(
                "SELECT COUNT(*) FROM workspace_files WHERE workspace = $1 \
                 AND substr(path, 1, $2) = $3",
            )
            .bind(workspace)
            .bind(under.chars().count() as i32)
            .bind(&under)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            if held > 0 && !recursive {
                return Err(Error::invalid(format!(
                    "Folder ({path}) is not empty; delete it with recursive=true"
                )));
            }
            db::query(
                "DELETE FROM workspace_files WHERE workspace = $1 AND substr(path, 1, $2) = $3",
            )
            .bind(workspace)
            .bind(under.chars().count() as i32)
            .bind(&under)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        db::query("DELETE FROM workspace_files WHERE workspace = $1 AND path = $2")
            .bind(workspace)
            .bind(path)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }
}
