//! Where `scanstream up` keeps its data, and what other commands read from there (the API
//! token `submit` and `stats` use).

use std::path::{Path, PathBuf};

/// The data folder: `dir` when given, else `$SCANSTREAM_DATA_DIR`, `$XDG_DATA_HOME/scanstream`
/// or `~/.local/share/scanstream`.
pub fn data_dir(dir: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = dir.or_else(|| std::env::var_os("SCANSTREAM_DATA_DIR").map(PathBuf::from)) {
        return dir;
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("scanstream");
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".local").join("share").join("scanstream")
}

/// The API token `up` creates for its data folder.
pub fn token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("api-token")
}
