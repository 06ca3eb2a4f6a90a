//! The spool: where a recording's files are written while it runs, before
//! they are finished and moved to their storage.
//!
//! Carries out the recorder core's file commands (`WriteFile`, `Append`,
//! `WriteAt`) under one directory. Paths come from naming templates that the
//! API validated, and are checked again here: relative, no `..`, no empty
//! or `.` segments, so nothing is written outside the spool. Every append
//! (about one second of media) is flushed to disk (`sync_data`), so a crash
//! loses at most the fragment being written.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

/// Files kept open at once; older handles are closed (and reopened on
/// demand) beyond this.
const MAX_OPEN_FILES: usize = 64;

/// One recording session's spool directory.
#[derive(Debug)]
pub struct Spool {
    root: PathBuf,
    open: HashMap<String, File>,
}

impl Spool {
    /// A spool under `root` (created on the first write).
    pub fn new(root: PathBuf) -> Spool {
        Spool {
            root,
            open: HashMap::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `relative` lives in the spool, if it is a safe relative path.
    pub fn resolve(&self, relative: &str) -> io::Result<PathBuf> {
        let path = Path::new(relative);
        let safe = !relative.is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(part) if !part.is_empty()))
            && !relative
                .split('/')
                .any(|part| part.is_empty() || part == ".");
        if !safe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsafe recording path {relative:?}"),
            ));
        }
        Ok(self.root.join(path))
    }

    /// Creates (or replaces) `relative` with `bytes`, durably.
    pub fn write_file(&mut self, relative: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.resolve(relative)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        self.open.remove(relative);
        // Playlists are rewritten often: write aside, then rename over, so
        // a reader (or a crash) never sees half a file.
        let temp = path.with_extension("weir-tmp");
        {
            let mut file = File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_data()?;
        }
        fs::rename(&temp, &path)
    }

    /// Appends `bytes` to `relative` and flushes them to disk.
    pub fn append(&mut self, relative: &str, bytes: &[u8]) -> io::Result<()> {
        let file = self.handle(relative)?;
        file.seek(SeekFrom::End(0))?;
        file.write_all(bytes)?;
        file.sync_data()
    }

    /// Overwrites `bytes` of `relative` at `offset`.
    pub fn write_at(&mut self, relative: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let file = self.handle(relative)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(bytes)?;
        file.sync_data()
    }

    /// Cuts `relative` to `len` bytes (crash recovery drops a torn tail).
    pub fn truncate(&mut self, relative: &str, len: u64) -> io::Result<()> {
        let file = self.handle(relative)?;
        file.set_len(len)?;
        file.sync_data()
    }

    /// Closes the handles of finished files.
    pub fn close(&mut self, paths: &[String]) {
        for path in paths {
            self.open.remove(path);
        }
    }

    /// Removes the whole spool directory (after its files were stored).
    pub fn remove(self) -> io::Result<()> {
        drop(self.open);
        match fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn handle(&mut self, relative: &str) -> io::Result<&mut File> {
        if !self.open.contains_key(relative) {
            let path = self.resolve(relative)?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            if self.open.len() >= MAX_OPEN_FILES {
                self.open.clear();
            }
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)?;
            self.open.insert(relative.to_string(), file);
        }
        self.open
            .get_mut(relative)
            .ok_or_else(|| io::Error::other("spool handle vanished"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_build_files_under_the_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::new(dir.path().join("s1"));
        spool.write_file("a/b/x.mp4", b"head").expect("write");
        spool.append("a/b/x.mp4", b"-body").expect("append");
        spool.write_at("a/b/x.mp4", 0, b"HEAD").expect("write at");
        spool.append("a/b/x.mp4", b"!").expect("append");
        let bytes = fs::read(dir.path().join("s1/a/b/x.mp4")).expect("read");
        assert_eq!(bytes, b"HEAD-body!");
        spool.truncate("a/b/x.mp4", 4).expect("truncate");
        spool.append("a/b/x.mp4", b"+tail").expect("append");
        let bytes = fs::read(dir.path().join("s1/a/b/x.mp4")).expect("read");
        assert_eq!(bytes, b"HEAD+tail");
        spool.write_file("a/b/x.m3u8", b"#EXTM3U 1").expect("write");
        spool
            .write_file("a/b/x.m3u8", b"#EXTM3U 2")
            .expect("rewrite");
        assert_eq!(
            fs::read(dir.path().join("s1/a/b/x.m3u8")).expect("read"),
            b"#EXTM3U 2"
        );
        spool.close(&["a/b/x.mp4".to_string()]);
        spool.remove().expect("removed");
        assert!(!dir.path().join("s1").exists());
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = Spool::new(dir.path().join("s"));
        for path in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/./b",
            "a/",
        ] {
            assert!(
                spool.write_file(path, b"x").is_err(),
                "{path:?} was accepted"
            );
            assert!(spool.append(path, b"x").is_err(), "{path:?} was accepted");
        }
        assert!(!dir.path().join("x").exists());
    }
}
