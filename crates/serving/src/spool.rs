//! Spool files: an endpoint's logged rows, one JSON line each, appended before the request is
//! answered, so a row the endpoint acknowledged survives the server being killed before its
//! table holds it. Each file has an id; a commit of the rows records in the table's Delta log
//! (an application transaction) how far into the file it wrote, so the next server to open the
//! table writes exactly the rest. A live server holds a lock on its file, so only files whose
//! server is gone are taken over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tarn_core::{Error, Result};

const EXTENSION: &str = "jsonl";

/// The file a running writer appends to.
#[derive(Debug)]
pub(crate) struct SpoolFile {
    pub id: String,
    pub path: PathBuf,
    file: File,
    /// Bytes appended: the offset just past the last line.
    pub len: u64,
}

impl SpoolFile {
    /// A new file in `folder` (made when missing), locked by this process.
    pub fn create(folder: &Path) -> Result<Self> {
        std::fs::create_dir_all(folder).map_err(|e| io_error(folder, e))?;
        let id = format!("spool-{}", uuid::Uuid::new_v4().simple());
        let path = folder.join(format!("{id}.{EXTENSION}"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        file.try_lock().map_err(|e| {
            Error::internal(format!(
                "cannot lock the spool file {}: {e}",
                path.display()
            ))
        })?;
        Ok(Self {
            id,
            path,
            file,
            len: 0,
        })
    }

    /// Appends one line; after it returns the line is the kernel's, whatever becomes of this
    /// process.
    pub fn append(&mut self, line: &[u8]) -> Result<()> {
        self.file
            .write_all(line)
            .map_err(|e| io_error(&self.path, e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Removes the file (every line of it is in the table).
    pub fn remove(self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot remove a spool file");
        }
    }
}

/// A file a server that is gone left behind, locked now by this one.
#[derive(Debug)]
pub(crate) struct Leftover {
    pub id: String,
    pub path: PathBuf,
    file: File,
}

impl Leftover {
    /// The complete lines from `offset` on, and the offset past the last of them (a line cut
    /// short by the kill was never acknowledged and is left out).
    pub fn lines_from(&mut self, offset: u64) -> Result<(Vec<Vec<u8>>, u64)> {
        let mut rest = Vec::new();
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_to_end(&mut rest))
            .map_err(|e| io_error(&self.path, e))?;
        let complete = rest.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let lines = rest[..complete]
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Ok((lines, offset + complete as u64))
    }

    pub fn remove(self) {
        drop(self.file);
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %err, "cannot remove a spool file");
        }
    }
}

/// The spool files in `folder` no live server holds.
pub(crate) fn leftovers(folder: &Path) -> Result<Vec<Leftover>> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error(folder, err)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| io_error(folder, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        let Some(id) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        if file.try_lock().is_ok() {
            found.push(Leftover { id, path, file });
        }
    }
    Ok(found)
}

fn io_error(path: &Path, err: std::io::Error) -> Error {
    Error::internal(format!("spool file {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_gives_back_complete_lines_after_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = SpoolFile::create(dir.path()).expect("create");
        spool.append(b"{\"a\":1}\n").expect("append");
        spool.append(b"{\"a\":2}\n").expect("append");
        let first = spool.len;
        spool.append(b"{\"a\":3}\n{\"a\":").expect("append");
        // A live writer's file is not taken over.
        assert!(leftovers(dir.path()).expect("list").is_empty());
        let path = spool.path.clone();
        drop(spool);
        let mut found = leftovers(dir.path()).expect("list");
        assert_eq!(found.len(), 1);
        let (lines, end) = found[0].lines_from(8).expect("read");
        assert_eq!(lines, vec![b"{\"a\":2}".to_vec(), b"{\"a\":3}".to_vec()]);
        assert_eq!(end, first + 8);
        let (rest, same) = found[0].lines_from(end).expect("read");
        assert!(rest.is_empty());
        assert_eq!(same, end);
        found.pop().expect("one").remove();
        assert!(!path.exists());
    }
}
