//! Properties of artifact paths, the part of an artifact's key a client chooses: a path the
//! checks accept never leaves its workspace's folder, whatever it holds (`..`, absolute
//! paths, backslashes, NUL, drive letters, Unicode, names at the length limits); a refusal is
//! INVALID_PARAMETER_VALUE; a file written at an accepted path reads back byte for byte and is
//! listed; reading any path answers the file or RESOURCE_DOES_NOT_EXIST, never an internal
//! error.

use std::path::{Component, Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::select;
use tarn_artifacts::{ArtifactStore, FileInfo, validate_relative_path};
use tarn_core::{Error, ErrorCode};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const WORKSPACE: &str = "dev";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `base` joined with `path` and normalised lexically (`..` pops, `.` stays, a root or
/// prefix restarts), as an operating system would resolve it with no links involved.
fn resolve(base: &Path, path: &str) -> PathBuf {
    let mut resolved = base.to_path_buf();
    for component in Path::new(path).components() {
        match component {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => resolved = PathBuf::from("/"),
            Component::Normal(part) => resolved.push(part),
        }
    }
    resolved
}

fn refused_cleanly(err: &Error, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        err.code,
        ErrorCode::InvalidParameterValue,
        "{} refused with {}",
        what,
        err
    );
    Ok(())
}

/// One name in a path, as clients write them: plain, with the `#` of fragments and
/// checkpoints, any Unicode but separators and controls, or long up to the 255-byte limit.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ._\\-]{1,20}",
        2 => "[a-z]{1,8}#[0-9]{1,4}",
        2 => "[^/\\\\\\x00-\\x1f\\x7f]{1,12}",
        1 => (200..=255usize).prop_map(|n| "n".repeat(n)),
    ]
    .prop_filter("a name, not . or ..", |s| s != "." && s != "..")
}

/// A relative path of 1 to 5 names, sometimes with a trailing slash.
fn relative_path() -> impl Strategy<Value = String> {
    (prop::collection::vec(segment(), 1..6), any::<bool>()).prop_map(|(segments, slash)| {
        let mut path = segments.join("/");
        if slash {
            path.push('/');
        }
        path
    })
}

/// Paths built to escape: parent steps, absolute starts, other separators, NUL, drive
/// letters, look-alike dots and slashes.
fn hostile_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        select(vec![
            "..",
            ".",
            "",
            "a",
            "b c",
            "/",
            "\\",
            "\0",
            "C:",
            "c:",
            "%2e%2e",
            "%2f",
            "\u{2215}",
            "\u{ff0e}\u{ff0e}",
            "..\\..",
            "~",
            "$HOME",
            "\u{202e}",
            "x#1",
            "*",
            "?",
        ]),
        1..8,
    )
    .prop_flat_map(|parts| {
        (Just(parts), select(vec!["/", "\\", "//", "/./", ""]))
            .prop_map(|(parts, joiner)| parts.join(joiner))
    })
}

/// A path made long: many long names, up to past the 4096-byte limit.
fn long_path() -> impl Strategy<Value = String> {
    (1..30usize, 100..=255usize).prop_map(|(count, length)| {
        (0..count)
            .map(|i| format!("{i}{}", "x".repeat(length - i.to_string().len())))
            .collect::<Vec<_>>()
            .join("/")
    })
}

fn body(size: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..size)
}

fn stream(
    bytes: Vec<u8>,
) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Unpin {
    futures::stream::iter(vec![Ok(bytes::Bytes::from(bytes))])
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Writes `bytes` at `path` in a fresh store; the store, its folder and the answer.
async fn write_one(
    path: &str,
    bytes: Vec<u8>,
) -> (tempfile::TempDir, ArtifactStore, tarn_core::Result<u64>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ArtifactStore::open(&dir.path().join("root").to_string_lossy()).expect("open");
    let written = store.put_stream(WORKSPACE, path, stream(bytes)).await;
    (dir, store, written)
}

proptest! {
    #![proptest_config(config(512))]

    /// A path the check accepts, joined to the workspace's folder, stays inside it; one it
    /// refuses is refused with INVALID_PARAMETER_VALUE.
    #[test]
    fn accepted_paths_never_leave_their_workspace_folder(
        path in prop_oneof![any::<String>(), hostile_path(), relative_path(), long_path()],
    ) {
        let base = Path::new("/srv/artifacts").join(WORKSPACE);
        match validate_relative_path(&path) {
            Ok(()) => {
                prop_assert!(!path.contains('\0'), "{:?}", path);
                prop_assert!(path.len() <= 4096, "{} bytes accepted", path.len());
                let resolved = resolve(&base, &path);
                prop_assert!(resolved.starts_with(&base), "{:?} resolves to {:?}", path, resolved);
            }
            Err(err) => refused_cleanly(&err, &path)?,
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// A file uploaded at an accepted path lands inside the workspace's folder, reads back
    /// byte for byte and is listed in its folder; an upload the store cannot take is refused
    /// with INVALID_PARAMETER_VALUE, never an internal error.
    #[test]
    fn accepted_paths_round_trip_through_the_store(
        path in relative_path(),
        bytes in body(4096),
    ) {
        runtime().block_on(async {
            prop_assume!(validate_relative_path(&path).is_ok());
            let (dir, store, written) = write_one(&path, bytes.clone()).await;
            let written = match written {
                Ok(written) => written,
                Err(err) => return refused_cleanly(&err, &path),
            };
            prop_assert_eq!(written, bytes.len() as u64);
            let root = dir.path().join("root");
            let files = files_under(&root);
            prop_assert_eq!(files.len(), 1, "{:?}", files);
            prop_assert!(files[0].starts_with(root.join(WORKSPACE)), "{:?}", files);
            let read = store.get_bytes(WORKSPACE, &path, u64::MAX).await;
            prop_assert_eq!(
                read.as_deref().map_err(|e| (e.code, e.message.clone())),
                Ok(&bytes[..]),
                "read back {:?}", path
            );
            let trimmed = path.trim_end_matches('/');
            let (folder, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
            let listed = store
                .list(WORKSPACE, folder)
                .await
                .map_err(|e| TestCaseError::fail(format!("list {folder:?}: {e}")))?;
            let entry = FileInfo {
                path: name.to_string(),
                is_dir: false,
                file_size: Some(bytes.len() as u64),
            };
            prop_assert!(listed.contains(&entry), "{:?} not in the listing {:?}", name, listed);
            Ok(())
        })?;
    }

    /// Reading any path, beside, above, below or far from a stored file (or too long for the
    /// file system), answers the file, RESOURCE_DOES_NOT_EXIST or INVALID_PARAMETER_VALUE:
    /// never an internal error.
    #[test]
    fn reading_any_path_answers_the_file_or_not_found(
        stored in relative_path(),
        probe in prop_oneof![relative_path(), long_path(), hostile_path()],
        how in 0..4u8,
    ) {
        runtime().block_on(async {
            prop_assume!(validate_relative_path(&stored).is_ok());
            let (_dir, store, written) = write_one(&stored, b"x".to_vec()).await;
            prop_assume!(written.is_ok());
            let stored = stored.trim_end_matches('/').to_string();
            let probe = match how {
                0 => probe,
                // Below the stored file, as if it were a folder.
                1 => format!("{stored}/{probe}"),
                // Its folder.
                2 => stored.rsplit_once('/').map_or(String::new(), |(f, _)| f.to_string()),
                _ => format!("{stored}{probe}"),
            };
            match store.get_bytes(WORKSPACE, &probe, u64::MAX).await {
                Ok(bytes) => {
                    prop_assert_eq!(probe.trim_end_matches('/'), stored.as_str());
                    prop_assert_eq!(&bytes[..], b"x");
                }
                Err(err) => prop_assert!(
                    matches!(
                        err.code,
                        ErrorCode::ResourceDoesNotExist | ErrorCode::InvalidParameterValue
                    ),
                    "reading {:?} beside {:?}: {:?} {}",
                    probe,
                    stored,
                    err.code,
                    err
                ),
            }
            Ok(())
        })?;
    }
}

// Regressions: the smallest inputs the properties above found, kept by name.

/// A file name ending in `#` and digits (`epoch#1`) is how uploads in progress are named, which
/// local storage never reads back: it is refused with the reason and nothing is written; the
/// same name as a folder, or with other characters after the `#`, is a file like any other.
#[test]
fn a_name_ending_in_hash_and_digits_is_refused_and_others_read_back() {
    runtime().block_on(async {
        let (dir, _store, written) = write_one("epoch#1", b"x".to_vec()).await;
        let err = written.expect_err("reserved name");
        assert_eq!(err.code, ErrorCode::InvalidParameterValue, "{err}");
        assert!(err.message.contains("reserved for uploads"), "{err}");
        assert!(files_under(dir.path()).is_empty());
        for name in ["epoch#1/model.onnx", "epoch#1a", "a#b", "#"] {
            let (_dir, store, written) = write_one(name, b"x".to_vec()).await;
            written.expect("written");
            let read = store.get_bytes(WORKSPACE, name, 10).await;
            assert_eq!(
                read.as_deref().map_err(|e| (e.code, e.message.clone())),
                Ok(&b"x"[..]),
                "{name}"
            );
        }
    });
}

/// A name of 255 bytes, the longest the check accepts, is written.
#[test]
fn a_name_at_the_length_limit_is_written() {
    runtime().block_on(async {
        let name = "n".repeat(255);
        validate_relative_path(&name).expect("accepted");
        let (_dir, store, written) = write_one(&name, b"x".to_vec()).await;
        assert_eq!(
            written.as_ref().map_err(|e| (e.code, e.message.clone())),
            Ok(&1)
        );
        assert_eq!(
            store
                .get_bytes(WORKSPACE, &name, 10)
                .await
                .map_err(|e| e.code)
                .as_deref(),
            Ok(&b"x"[..])
        );
    });
}

/// Reading below a file, as if it were a folder, is not found.
#[test]
fn reading_below_a_file_is_not_found() {
    runtime().block_on(async {
        let (_dir, store, written) = write_one("a", b"x".to_vec()).await;
        written.expect("written");
        let err = store
            .get_bytes(WORKSPACE, "a/b", 10)
            .await
            .expect_err("no such file");
        assert_eq!(err.code, ErrorCode::ResourceDoesNotExist, "{err}");
    });
}

/// Reading a path the check accepts but the file system cannot name (past PATH_MAX once
/// the root is in front) is not an internal error.
#[test]
fn reading_a_path_at_the_length_limit_is_not_an_internal_error() {
    runtime().block_on(async {
        let path = vec!["x".repeat(200); 20].join("/");
        validate_relative_path(&path).expect("accepted");
        let (_dir, store, written) = write_one("a", b"x".to_vec()).await;
        written.expect("written");
        let err = store
            .get_bytes(WORKSPACE, &path, 10)
            .await
            .expect_err("no such file");
        assert_ne!(err.code, ErrorCode::InternalError, "{err}");
    });
}
