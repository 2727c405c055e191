//! Workspace files: what bundle deploys upload and tasks run (`python_file`,
//! `notebook_path`), kept per workspace in the metadata store so every server and worker reads
//! the same tree. Paths are absolute, as Databricks' workspace API takes them; a leading
//! `/Workspace` is the same tree.

use crate::{Error, Result};

/// The largest file the workspace API takes (Databricks' import limit).
pub const MAX_FILE_SIZE: usize = 10 * 1024 * 1024;
/// The longest path taken.
const MAX_PATH: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Directory,
    File,
    /// A source-format notebook (`# Databricks notebook source`), which tasks run by cells.
    Notebook,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "DIRECTORY",
            Self::File => "FILE",
            Self::Notebook => "NOTEBOOK",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "DIRECTORY" => Self::Directory,
            "FILE" => Self::File,
            "NOTEBOOK" => Self::Notebook,
            _ => return None,
        })
    }
}

/// A file, notebook or directory of a workspace, as `workspace/get-status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceObject {
    pub path: String,
    pub object_type: ObjectType,
    /// A notebook's language (`PYTHON`, `SQL`).
    pub language: Option<String>,
    pub object_id: i64,
    /// Bytes; 0 for a directory.
    pub size: i64,
    pub created_at: i64,
    pub modified_at: i64,
}

/// `path` in its one stored form: absolute, without `/Workspace`, `.` or `..`, empty parts or a
/// trailing slash (`/` is the root).
pub fn normalize_path(path: &str) -> Result<String> {
    if path.len() > MAX_PATH {
        return Err(Error::invalid(format!(
            "A workspace path is at most {MAX_PATH} bytes"
        )));
    }
    if !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "Path ({path}) must be absolute, starting with /"
        )));
    }
    let mut parts = Vec::new();
    for part in path.split('/').filter(|part| !part.is_empty()) {
        if part == "." || part == ".." || part.chars().any(|c| c.is_control() || c == '\\') {
            return Err(Error::invalid(format!(
                "Path ({path}) has a part ({part:?}) a workspace path cannot have"
            )));
        }
        parts.push(part);
    }
    // `/Workspace` is the root's other name, as in Databricks; every leading one goes, so the
    // stored form normalizes to itself (`/Workspace/Workspace` is the root too).
    let reserved = parts
        .iter()
        .take_while(|part| **part == "Workspace")
        .count();
    parts.drain(..reserved);
    Ok(format!("/{}", parts.join("/")))
}

/// The directories above `path` (normalized), nearest last: `/a/b/c` has `/a` and `/a/b`.
pub fn ancestors(path: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(next) = path[at + 1..].find('/') {
        at += next + 1;
        found.push(path[..at].to_string());
    }
    found
}

/// The directory holding `path` (normalized); the root for a top-level object.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_one_form_and_cannot_climb() {
        assert_eq!(
            normalize_path("/Workspace/Users/a@b.c//x.py/").expect("in the test"),
            "/Users/a@b.c/x.py"
        );
        assert_eq!(normalize_path("/").expect("in the test"), "/");
        for bad in [
            "relative/x.py",
            "/a/../etc/passwd",
            "/a/./b",
            "/a\0b",
            "/a\\..\\b",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ancestors("/a/b/c"), vec!["/a", "/a/b"]);
        assert!(ancestors("/a").is_empty());
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(parent("/a"), "/");
    }
}
