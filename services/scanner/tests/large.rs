//! Files larger than a window are scanned in overlapping windows, never read whole from a folder:
//! secrets across window boundaries and in late windows are found once each, on their lines.
//! Files over the size bound and binary files are not scanned, and every report says so: the
//! run's counts and list, the human summary, JSON, and SARIF tool execution notifications. The
//! windows here are 64 KiB (overlap 4 KiB, so 256 bytes of context) to keep the files small.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use scanstream_contracts::command::ScanMode;
use scanstream_scanner::Error;
use scanstream_scanner::dir::{DirSource, FileReader};
use scanstream_scanner::engine::Engine;
use scanstream_scanner::report::Report;
use scanstream_scanner::rules::RulePack;
use scanstream_scanner::runner::{EngineRun, Limits, Progress, SkipReason, Skipped};
use scanstream_scanner::scan::Scanning;
use scanstream_scanner::secrets::{DEFAULT_FINGERPRINT_KEY, SecretsEngine};
use scanstream_scanner::source::{Item, Place, Reader, Source, StreamSource};

mod support;

use support::sample;

const WINDOW: u64 = 64 << 10;
const OVERLAP: u64 = 4 << 10;
/// Context before a window's owned bytes: a sixteenth of the overlap.
const CONTEXT: u64 = OVERLAP / 16;
/// Where window `k` starts: `k * STRIDE`.
const STRIDE: u64 = WINDOW - OVERLAP;
const MAX_BLOB: u64 = 512 << 10;
/// The size of `big.txt`: six windows, the last one short.
const BIG: u64 = 5 * STRIDE + 20_000;

fn limits() -> Limits {
    Limits {
        max_blob_bytes: MAX_BLOB,
        window_bytes: WINDOW,
        overlap_bytes: OVERLAP,
    }
}

fn engine() -> SecretsEngine {
    SecretsEngine::new(
        RulePack::builtin().unwrap(),
        DEFAULT_FINGERPRINT_KEY.as_bytes(),
    )
}

/// A secret planted in `big.txt`.
#[derive(Debug)]
struct Planted {
    rule: &'static str,
    secret: String,
    line: u32,
}

/// File content: lines of dots (no rule keyword, nothing any rule matches) around samples.
#[derive(Default)]
struct Content(Vec<u8>);

impl Content {
    /// Dot lines up to offset `at`, the last one ending just before it.
    fn pad_to(&mut self, at: u64) {
        let at = usize::try_from(at).unwrap();
        assert!(
            self.0.len() < at,
            "samples overlap: {} >= {at}",
            self.0.len()
        );
        while self.0.len() < at {
            let next = self.0.len() + 1;
            self.0.push(if next == at || next.is_multiple_of(64) {
                b'\n'
            } else {
                b'.'
            });
        }
    }

    /// Plants the sample of `rule` so that its secret starts at offset `at`.
    fn plant(&mut self, rule: &'static str, at: u64) -> Planted {
        let (text, secret) = sample(rule);
        let index = text.find(&secret).unwrap() as u64;
        self.pad_to(at - index);
        self.0.extend_from_slice(text.as_bytes());
        assert_eq!(
            &self.0[at as usize..at as usize + secret.len()],
            secret.as_bytes()
        );
        let line = 1 + self.0[..at as usize]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u32;
        Planted { rule, secret, line }
    }
}

/// The boundary between the matches window `k - 1` owns and those window `k` owns.
fn owned_from(k: u64) -> u64 {
    k * STRIDE + CONTEXT
}

/// The end of window `k`'s bytes.
fn window_end(k: u64) -> u64 {
    k * STRIDE + WINDOW
}

struct Folder {
    dir: tempfile::TempDir,
    big: Vec<u8>,
    planted: Vec<Planted>,
    /// Secrets in files that are not scanned, which no report may show.
    hidden: Vec<String>,
}

/// `big.txt` (six windows) with secrets across window boundaries and in the last window,
/// `huge.txt` one byte over the bound, and `data.dat`, binary; the last two hold secrets too.
fn folder() -> Folder {
    let dir = tempfile::tempdir().unwrap();
    let mut big = Content::default();
    let planted = vec![
        // Its label ("AWS Secret Access Key: ") starts before the boundary between windows 0 and
        // 1 and the secret after it: the match is window 0's, and both windows read it whole.
        big.plant("aws-secret-access-key", owned_from(1) + 5),
        // Across the end of window 0's bytes: window 0 sees a piece, window 1 all of it.
        big.plant("github-pat", window_end(0) - 20),
        // Starts one byte before the boundary between windows 1 and 2.
        big.plant("npm-token", owned_from(2) - 1),
        // A multi-line key across the end of window 2's bytes.
        big.plant("private-key", window_end(2) - 800),
        // In the last window.
        big.plant("slack-webhook-url", 5 * STRIDE + 10_000),
    ];
    big.pad_to(BIG);
    assert_eq!(big.0.len() as u64, BIG);
    std::fs::write(dir.path().join("big.txt"), &big.0).unwrap();

    let mut huge = Content::default();
    let (text, huge_secret) = sample("github-pat");
    huge.0.extend_from_slice(text.as_bytes());
    huge.pad_to(MAX_BLOB + 1);
    std::fs::write(dir.path().join("huge.txt"), &huge.0).unwrap();

    let (text, binary_secret) = sample("npm-token");
    let mut binary = b"\x00\x01binary header\n".to_vec();
    binary.extend_from_slice(text.as_bytes());
    std::fs::write(dir.path().join("data.dat"), &binary).unwrap();
    Folder {
        dir,
        big: big.0,
        planted,
        hidden: vec![huge_secret, binary_secret],
    }
}

fn scanning(cache: Option<&Path>) -> Scanning {
    Scanning::new(
        vec![Arc::new(engine())],
        cache,
        limits(),
        HashSet::new(),
        vec![],
    )
}

/// A folder whose reader refuses to read whole any file larger than a window.
struct Streamed(DirSource);

struct StreamedReader(FileReader);

impl Reader for StreamedReader {
    fn size(&mut self, item: &Item, ahead: u64) -> Result<u64, Error> {
        self.0.size(item, ahead)
    }

    fn read(&mut self, item: &Item, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.0.read(item, buf)?;
        assert!(
            buf.len() as u64 <= WINDOW,
            "{} ({} bytes) was read whole",
            item.places[0].path,
            buf.len()
        );
        Ok(())
    }

    fn open(&mut self, item: &Item) -> Result<Box<dyn std::io::Read>, Error> {
        self.0.open(item)
    }

    fn blob_id(&mut self, item: &Item) -> Result<(Vec<u8>, u64), Error> {
        self.0.blob_id(item)
    }
}

impl Source for Streamed {
    type Reader = StreamedReader;

    fn items(&self) -> &[Item] {
        self.0.items()
    }

    fn reader(&self) -> Result<StreamedReader, Error> {
        Ok(StreamedReader(self.0.reader()?))
    }
}

/// The `secrets` engine's run over `source`.
fn run_secrets(source: &impl Source) -> EngineRun {
    let mut runs = scanning(None)
        .run_engines(
            source,
            &["secrets".to_owned()],
            &HashSet::new(),
            &Progress::default(),
            &AtomicBool::new(false),
        )
        .unwrap();
    assert_eq!(runs.len(), 1);
    runs.remove(0)
}

fn scan_folder(folder: &Folder) -> EngineRun {
    run_secrets(&Streamed(DirSource::walk(folder.dir.path()).unwrap()))
}

/// (rule, path, line, fingerprint) of every finding.
fn found(run: &EngineRun) -> BTreeSet<(String, String, u32, String)> {
    run.found
        .iter()
        .map(|f| {
            (
                f.hit.rule.clone(),
                f.place.path.clone(),
                f.hit.line,
                f.hit.fingerprint.clone(),
            )
        })
        .collect()
}

/// What `planted` must give at `path`: each secret whole (its fingerprint), on its line.
fn expected(planted: &[Planted], path: &str) -> BTreeSet<(String, String, u32, String)> {
    let engine = engine();
    planted
        .iter()
        .map(|p| {
            (
                p.rule.to_owned(),
                path.to_owned(),
                p.line,
                engine.fingerprint(p.rule, p.secret.as_bytes()),
            )
        })
        .collect()
}

fn skipped(commit: Option<&str>) -> Vec<Skipped> {
    let place = |path: &str| Place {
        path: path.to_owned(),
        commit: commit.map(str::to_owned),
    };
    vec![
        Skipped {
            place: place("data.dat"),
            size: 16 + sample("npm-token").0.len() as u64,
            reason: SkipReason::Binary,
        },
        Skipped {
            place: place("huge.txt"),
            size: MAX_BLOB + 1,
            reason: SkipReason::TooLarge,
        },
    ]
}

#[test]
fn large_folder_files_are_streamed_in_windows_and_each_secret_is_found_once() {
    let folder = folder();
    let run = scan_folder(&folder);
    assert_eq!(found(&run), expected(&folder.planted, "big.txt"));
    assert_eq!(run.found.len(), folder.planted.len(), "{:#?}", run.found);
    // The same findings as one scan of the whole content.
    let whole: BTreeSet<(String, String, u32, String)> = engine()
        .scan(&folder.big)
        .into_iter()
        .map(|h| (h.rule, "big.txt".to_owned(), h.line, h.fingerprint))
        .collect();
    assert_eq!(found(&run), whole);
    assert_eq!(run.files, 1, "only big.txt is scanned");
    assert_eq!(run.bytes, BIG);
    // What was not scanned is counted and listed, with its reason.
    assert_eq!((run.skipped_large, run.skipped_binary), (1, 1));
    assert_eq!(run.skipped, skipped(None));
    assert_eq!(run.skipped_unlisted, 0);
    assert_eq!(run.max_blob_bytes, MAX_BLOB);
}

/// A pipe: hands out at most 1000 bytes per read, and fails after `fail_after` bytes if set.
struct Pipe {
    content: std::io::Cursor<Vec<u8>>,
    fail_after: Option<u64>,
}

impl std::io::Read for Pipe {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self
            .fail_after
            .is_some_and(|at| self.content.position() >= at)
        {
            return Err(std::io::Error::other("the pipe broke"));
        }
        let n = out.len().min(1000);
        self.content.read(&mut out[..n])
    }
}

fn scan_stream(content: Vec<u8>, fail_after: Option<u64>) -> EngineRun {
    run_secrets(&StreamSource::new(
        "stdin".into(),
        Box::new(Pipe {
            content: std::io::Cursor::new(content),
            fail_after,
        }),
    ))
}

/// Standard input is scanned as it comes, in windows, however long: past the size bound that
/// stops files (it is never held whole), each secret found once on its line; a stream that
/// breaks partway is listed as unreadable (`scanstream scan -` then fails).
#[test]
fn a_stream_is_scanned_in_windows_however_long_it_is() {
    let folder = folder();
    let mut content = Content(folder.big.clone());
    let mut planted = folder.planted;
    // Past the bound a file is skipped at.
    planted.push(content.plant("npm-token", MAX_BLOB + 1000));
    content.pad_to(MAX_BLOB + 3 * STRIDE);
    let size = content.0.len() as u64;
    let run = scan_stream(content.0.clone(), None);
    assert_eq!(found(&run), expected(&planted, "stdin"));
    assert_eq!(run.found.len(), planted.len(), "{:#?}", run.found);
    assert_eq!((run.files, run.bytes, run.not_scanned()), (1, size, 0));

    let broken = scan_stream(content.0, Some(2 * WINDOW));
    assert_eq!((broken.files, broken.skipped_unreadable), (0, 1));
    assert_eq!(
        broken.skipped[0].reason,
        SkipReason::Unreadable(std::io::ErrorKind::Other)
    );
}

#[test]
fn large_git_blobs_are_scanned_in_windows_and_cached_once() {
    let folder = folder();
    let repo = folder.dir.path();
    support::git(repo, &["init", "-q", "-b", "main"], None);
    support::git(repo, &["add", "-A"], None);
    support::git(repo, &["commit", "-q", "-m", "large"], None);
    let head = support::git(repo, &["rev-parse", "HEAD"], None);
    let cache = tempfile::tempdir().unwrap();
    let scanning = scanning(Some(cache.path()));
    let scan = || {
        let resolved = scanning.resolve(repo, None, ScanMode::Tree).unwrap();
        let mut runs = scanning
            .scan(
                &resolved,
                &["secrets".to_owned()],
                ScanMode::Tree,
                "file:///large",
                None,
                &Progress::default(),
                &AtomicBool::new(false),
            )
            .unwrap();
        runs.remove(0)
    };
    let first = scan();
    assert_eq!(found(&first), expected(&folder.planted, "big.txt"));
    assert_eq!(first.found.len(), folder.planted.len());
    assert!(
        first
            .found
            .iter()
            .all(|f| f.place.commit.as_deref() == Some(&head))
    );
    assert_eq!((first.files, first.cached), (1, 0));
    assert_eq!(first.skipped, skipped(Some(&head)));

    // The windows of the blob gave one cached result; the binary blob is cached as binary.
    let again = scan();
    assert_eq!((again.files, again.cached), (1, 1));
    assert_eq!(found(&again), found(&first));
    assert_eq!((again.skipped_large, again.skipped_binary), (1, 1));
    assert_eq!(again.skipped, skipped(Some(&head)));
}

#[test]
fn reports_name_every_file_not_scanned_and_why() {
    let folder = folder();
    let run = scan_folder(&folder);
    let report = Report {
        target: folder.dir.path().display().to_string(),
        commit: None,
        runs: vec![run],
        rules: engine().rules(),
    };

    let human = report.human();
    assert!(
        human.contains("2 files not scanned: 1 over 512 KiB, 1 binary"),
        "{human}"
    );
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("SKIPPED") && l.contains("huge.txt")),
        "{human}"
    );

    let sarif = report.sarif();
    let errors = support::sarif_errors(&sarif);
    assert!(errors.is_empty(), "{errors:#?}");
    let invocation = &sarif["runs"][0]["invocations"][0];
    assert_eq!(invocation["executionSuccessful"], true);
    let notes = invocation["toolExecutionNotifications"].as_array().unwrap();
    assert_eq!(notes.len(), 2, "{notes:#?}");
    let note = |path: &str| {
        notes
            .iter()
            .find(|n| n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == path)
            .unwrap_or_else(|| panic!("no notification for {path}: {notes:#?}"))
    };
    let huge = note("huge.txt");
    assert_eq!(huge["level"], "warning");
    assert_eq!(huge["properties"]["reason"], "too_large");
    let text = huge["message"]["text"].as_str().unwrap();
    assert!(
        text.contains("huge.txt") && text.contains("512 KiB"),
        "{text}"
    );
    let binary = note("data.dat");
    assert_eq!(binary["level"], "note");
    assert_eq!(binary["properties"]["reason"], "binary");
    let text = binary["message"]["text"].as_str().unwrap();
    assert!(
        text.contains("data.dat") && text.contains("binary"),
        "{text}"
    );

    let json = report.json();
    let engines = &json["summary"]["engines"][0];
    assert_eq!(engines["skipped"], 2);
    assert_eq!(engines["skipped_files"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        json["summary"]["not_scanned"],
        "2 files not scanned: 1 over 512 KiB, 1 binary"
    );

    let mut secrets = folder.hidden.clone();
    secrets.extend(folder.planted.iter().map(|p| p.secret.clone()));
    for output in [sarif.to_string(), json.to_string(), human] {
        for secret in &secrets {
            assert!(
                !output.contains(secret.as_str()),
                "a secret leaked into a report"
            );
        }
    }
}
