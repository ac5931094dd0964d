//! Java, Maven, and the artifacts the local backend runs: Apache Kafka's jars with their runtime
//! dependencies, and Apicurio Registry's server archive, both from Maven Central, cached under
//! [`crate::cache_dir`] and fetched once (guarded by a file lock, so concurrent test binaries
//! never download over each other).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use sha2::{Digest, Sha512};

use crate::{Error, Result};

/// Apache Kafka release run by the local backend. 4.4.0's POM names a `kafka-tools-api` jar that
/// Maven Central does not have, so the newest complete 4.x release is used.
pub const KAFKA_VERSION: &str = "4.3.1";
/// Apicurio Registry release. 3.0.x runs on Java 17; 3.1 and later need Java 21.
pub const APICURIO_VERSION: &str = "3.0.9";
/// Log4j binding for Kafka's slf4j 1.7 API, so broker logs reach a file instead of nowhere.
const LOG4J_VERSION: &str = "2.24.3";

/// The `java` to run: `$JAVA_HOME/bin/java`, else `java` on the PATH; must be 17 or newer.
pub fn java() -> Result<PathBuf> {
    let java = std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin").join("java"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("java"));
    let output = Command::new(&java)
        .arg("-version")
        .output()
        .map_err(|e| Error::MissingTool {
            tool: "java",
            hint: format!(
                "{e}; install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)"
            ),
        })?;
    let text = String::from_utf8_lossy(&output.stderr);
    let major = parse_java_major(&text).unwrap_or(0);
    if major < 17 {
        return Err(Error::ToolTooOld {
            tool: "java",
            found: text.lines().next().unwrap_or_default().to_owned(),
            required: "17".to_owned(),
        });
    }
    Ok(java)
}

/// The major version in `java -version` output (`openjdk version "17.0.15"` → 17,
/// `"1.8.0_392"` → 8).
pub fn parse_java_major(version_output: &str) -> Option<u32> {
    let start = version_output.find('"')? + 1;
    let rest = &version_output[start..];
    let version = &rest[..rest.find('"')?];
    let mut parts = version.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

fn mvn() -> Result<PathBuf> {
    let mvn = PathBuf::from("mvn");
    match Command::new(&mvn)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(mvn),
        Ok(status) => Err(Error::MissingTool {
            tool: "mvn",
            hint: format!("`mvn -v` exited with {status}"),
        }),
        Err(e) => Err(Error::MissingTool {
            tool: "mvn",
            hint: format!("{e}; install Maven (Debian: apt-get install maven)"),
        }),
    }
}

/// Holds the cache's exclusive lock while artifacts are fetched.
struct CacheLock(File);

impl CacheLock {
    fn acquire(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let path = dir.join(".fetch.lock");
        let file = File::create(&path).map_err(Error::io(format!("opening {}", path.display())))?;
        file.lock()
            .map_err(Error::io(format!("locking {}", path.display())))?;
        Ok(Self(file))
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Runs `mvn` with `args`, logging to `log`; an error names the log.
fn run_mvn(args: &[&str], cwd: &Path, log: &Path, artifact: &str) -> Result<()> {
    let out = File::create(log).map_err(Error::io(format!("creating {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io(format!("opening {}", log.display())))?;
    tracing::info!(artifact, "fetching from Maven Central (first run only)");
    let status = Command::new(mvn()?)
        .args(["-B", "-q"])
        .args(args)
        .current_dir(cwd)
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(Error::io("running mvn"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Fetch {
            artifact: artifact.to_owned(),
            log: log.to_owned(),
        })
    }
}

/// The folder of Kafka jars (`<cache>/kafka-<version>/libs`), fetched if missing.
pub fn kafka_libs(cache: &Path) -> Result<PathBuf> {
    let home = cache.join(format!("kafka-{KAFKA_VERSION}"));
    let libs = home.join("libs");
    // `.complete-2`: the set of jars includes kafka-tools (for `TransactionsCommand`); a cache
    // completed before that is fetched again.
    let done = home.join(".complete-2");
    if done.is_file() {
        return Ok(libs);
    }
    let _lock = CacheLock::acquire(cache)?;
    if done.is_file() {
        return Ok(libs);
    }
    fs::create_dir_all(&home).map_err(Error::io(format!("creating {}", home.display())))?;
    let pom = format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.scanstream.dev</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{KAFKA_VERSION}</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"#
    );
    fs::write(home.join("pom.xml"), pom).map_err(Error::io("writing the Kafka pom.xml"))?;
    let _ = fs::remove_dir_all(&libs);
    run_mvn(
        &[
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            "-DoutputDirectory=libs",
        ],
        &home,
        &home.join("fetch.log"),
        &format!("org.apache.kafka:kafka_2.13:{KAFKA_VERSION}"),
    )?;
    File::create(&done).map_err(Error::io(format!("creating {}", done.display())))?;
    Ok(libs)
}

/// Base URL of the Maven repository artifacts come from: `SCANSTREAM_MAVEN_REPO`, else Maven
/// Central.
fn maven_repo() -> String {
    std::env::var("SCANSTREAM_MAVEN_REPO")
        .unwrap_or_else(|_| "https://repo.maven.apache.org/maven2".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// Writes to a file and hashes what it writes.
struct HashingWriter {
    file: File,
    hasher: Sha512,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Downloads `url` to `dest`, checking it against the repository's published SHA-512.
fn download_verified(url: &str, dest: &Path) -> std::result::Result<(), String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| e.to_string())?;
    let expected = client
        .get(format!("{url}.sha512"))
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .and_then(reqwest::blocking::Response::text)
        .map_err(|e| format!("{url}.sha512: {e}"))?;
    let expected = expected
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mut response = client
        .get(url)
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .map_err(|e| format!("{url}: {e}"))?;
    let file = File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut writer = HashingWriter {
        file,
        hasher: Sha512::new(),
    };
    response
        .copy_to(&mut writer)
        .map_err(|e| format!("{url}: {e}"))?;
    let actual: String = writer
        .hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "{url}: SHA-512 {actual} does not match the published {expected}"
        ))
    }
}

/// [`download_verified`] up to four times, waiting `first_wait` and then twice as long before
/// each next try: a 100 MB download over a shared network may break off.
fn download_retried(
    url: &str,
    dest: &Path,
    first_wait: Duration,
) -> std::result::Result<(), String> {
    (|| download_verified(url, dest))
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(first_wait)
                .with_max_times(3),
        )
        .notify(|e, wait| tracing::warn!(error = %e, ?wait, "download failed; trying again"))
        .call()
}

/// The Apicurio Registry runner jar, downloaded from the Maven repository (its archive is not
/// resolvable through `mvn`: the parent POM is not published) and unpacked if missing.
pub fn apicurio_runner(cache: &Path) -> Result<PathBuf> {
    let home = cache.join(format!("apicurio-registry-{APICURIO_VERSION}"));
    let runner = home.join(format!(
        "apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
    ));
    // `.complete-2`: the set of jars includes kafka-tools (for `TransactionsCommand`); a cache
    // completed before that is fetched again.
    let done = home.join(".complete-2");
    if done.is_file() && runner.is_file() {
        return Ok(runner);
    }
    let _lock = CacheLock::acquire(cache)?;
    if done.is_file() && runner.is_file() {
        return Ok(runner);
    }
    let _ = fs::remove_dir_all(&home);
    fs::create_dir_all(&home).map_err(Error::io(format!("creating {}", home.display())))?;
    let artifact = format!("io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all");
    let file_name = format!("apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz");
    let url = format!(
        "{}/io/apicurio/apicurio-registry-app/{APICURIO_VERSION}/{file_name}",
        maven_repo()
    );
    let log = home.join("fetch.log");
    let archive = home.join(&file_name);
    tracing::info!(artifact, "fetching from Maven Central (first run only)");
    let fail = |detail: String| {
        let _ = fs::write(&log, detail);
        Error::Fetch {
            artifact: artifact.clone(),
            log: log.clone(),
        }
    };
    download_retried(&url, &archive, Duration::from_secs(2)).map_err(&fail)?;
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .current_dir(&home)
        .status()
        .map_err(Error::io("running tar"))?;
    if !status.success() || !runner.is_file() {
        return Err(fail(format!(
            "tar xzf {} failed: {status}",
            archive.display()
        )));
    }
    let _ = fs::remove_file(&archive);
    File::create(&done).map_err(Error::io(format!("creating {}", done.display())))?;
    Ok(runner)
}

#[cfg(test)]
mod tests {
    use super::{download_retried, parse_java_major};
    use sha2::{Digest, Sha512};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    /// Serves `body` at `/a.tgz` and the SHA-512 `published` at `/a.tgz.sha512`; the first
    /// `broken` requests for the archive get half of it and a closed connection. Returns the
    /// base URL and how many archive requests came.
    fn server(
        body: Vec<u8>,
        published: String,
        broken: usize,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = std::sync::Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let head = |len: usize| {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
                };
                if line.contains("/a.tgz.sha512 ") {
                    let _ = stream.write_all(head(published.len()).as_bytes());
                    let _ = stream.write_all(published.as_bytes());
                } else if line.contains("/a.tgz ") {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(head(body.len()).as_bytes());
                    let sent = if n < broken {
                        &body[..body.len() / 2]
                    } else {
                        &body[..]
                    };
                    let _ = stream.write_all(sent);
                } else {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        });
        (base, served)
    }

    fn sha512_hex(bytes: &[u8]) -> String {
        Sha512::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn a_download_that_breaks_off_is_tried_again_and_kept_whole() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let (base, served) = server(body.clone(), format!("{}  a.tgz\n", sha512_hex(&body)), 2);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tgz");
        download_retried(&format!("{base}/a.tgz"), &dest, Duration::from_millis(10)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn a_download_that_never_matches_its_checksum_fails_after_four_tries() {
        let body = b"not the published archive".to_vec();
        let (base, served) = server(body, format!("{}\n", sha512_hex(b"the archive")), 0);
        let dir = tempfile::tempdir().unwrap();
        let error = download_retried(
            &format!("{base}/a.tgz"),
            &dir.path().join("a.tgz"),
            Duration::from_millis(10),
        )
        .unwrap_err();
        assert!(error.contains("does not match the published"), "{error}");
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[test]
    fn reads_java_major_versions() {
        assert_eq!(
            parse_java_major("openjdk version \"17.0.15\" 2025-04-15"),
            Some(17)
        );
        assert_eq!(parse_java_major("java version \"1.8.0_392\""), Some(8));
        assert_eq!(
            parse_java_major("openjdk version \"21\" 2023-09-19"),
            Some(21)
        );
        assert_eq!(parse_java_major("nothing here"), None);
    }
}
