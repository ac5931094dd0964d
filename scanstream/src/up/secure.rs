//! `scanstream up --secure`: the local cluster as production runs it. SCRAM-SHA-512 over TLS
//! with a CA made at first start, Kafka's standard authorizer with no access without an ACL, and
//! one SCRAM user per principal of `scanstream_platform::access` (what `scanstream acls render`
//! writes into `strimzi/users.yaml`) holding exactly its ACLs. Every role connects as its own
//! user; `up` itself (topics, schemas, the demo, repairs) as the broker's admin.
//!
//! Each user's client settings are written to `cluster/users/<user>.properties` and the CA to
//! `cluster/ca.pem`, mode 0600, for the operator's own clients (`replay`, `audit`, kcat, Kafka's
//! tools).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use scanstream_platform::Settings;
use scanstream_platform::access::Principal;
use scanstream_testcontainers::LocalCluster;
use scanstream_testcontainers::secure::{ADMIN, acls};

use super::UpError;

/// Principals that are not processes `up` runs or an operator uses: KEDA reads lag in
/// Kubernetes only.
const NOT_LOCAL: &[&str] = &["keda"];

/// The SCRAM users of a secured `up`: every local principal of the deployment's settings.
pub fn principals(settings: &Settings) -> Vec<Principal> {
    scanstream_platform::access::principals(settings)
        .into_iter()
        .filter(|p| !NOT_LOCAL.contains(&p.name))
        .collect()
}

/// The users and their passwords, once the cluster runs with them and their ACLs.
#[derive(Clone)]
pub struct Users {
    passwords: BTreeMap<String, String>,
    ca: String,
}

impl Users {
    /// Grants the principals' ACLs on `cluster` and writes every user's client settings and the
    /// CA under `root` (the `cluster/` folder).
    pub fn grant(
        cluster: &LocalCluster,
        principals: &[Principal],
        root: &Path,
    ) -> Result<Users, UpError> {
        let security = cluster.security().ok_or_else(|| {
            UpError::DataDir("the local cluster did not start secured".to_owned())
        })?;
        cluster.create_acls(&acls(principals))?;
        let ca = root.join("ca.pem");
        let pem = std::fs::read_to_string(&security.ca_file).map_err(|e| {
            UpError::DataDir(format!("cannot read {}: {e}", security.ca_file.display()))
        })?;
        write_private(&ca, &pem)?;
        let users = root.join("users");
        std::fs::create_dir_all(&users)
            .map_err(|e| UpError::DataDir(format!("cannot create {}: {e}", users.display())))?;
        let bootstrap = &cluster.endpoints().bootstrap_servers;
        for (user, password) in &security.passwords {
            let text = format!(
                "# Kafka client settings of the SCRAM user {user} of this local cluster.\n\
                 bootstrap.servers={bootstrap}\n\
                 security.protocol=SASL_SSL\n\
                 sasl.mechanism=SCRAM-SHA-512\n\
                 sasl.username={user}\n\
                 sasl.password={password}\n\
                 ssl.ca.location={}\n",
                ca.display()
            );
            write_private(&users.join(format!("{user}.properties")), &text)?;
        }
        Ok(Users {
            passwords: security.passwords.clone(),
            ca: ca.display().to_string(),
        })
    }

    /// `settings` connecting as `user` over SASL_SSL.
    pub fn as_user(&self, settings: &Settings, user: &str) -> Settings {
        let mut settings = settings.clone();
        let kafka = &mut settings.kafka;
        kafka.security_protocol = scanstream_platform::config::SecurityProtocol::SaslSsl;
        kafka.sasl_mechanism = "SCRAM-SHA-512".to_owned();
        kafka.sasl_username = Some(user.to_owned());
        kafka.sasl_password = self.passwords.get(user).cloned().map(Into::into);
        kafka.ssl_ca_location = Some(self.ca.clone());
        settings
    }

    /// `settings` as the broker's admin (topics, schemas, repairs, the demo's reads).
    pub fn as_admin(&self, settings: &Settings) -> Settings {
        self.as_user(settings, ADMIN)
    }
}

/// Refuses to start a local cluster in another mode than its folder was first started with (a
/// plaintext broker's data has no SCRAM users; a secured one's clients would need them), and
/// records the mode on first start.
pub fn check_mode(cluster: &Path, secure: bool) -> Result<(), UpError> {
    let marker = cluster.join("mode");
    let wanted = if secure { "secure" } else { "plaintext" };
    match std::fs::read_to_string(&marker) {
        Ok(found) if found.trim() == wanted => Ok(()),
        Ok(found) => Err(UpError::DataDir(format!(
            "the local cluster in {} was first started {}; start it the same way, or use another --data-dir",
            cluster.display(),
            if found.trim() == "secure" {
                "with --secure"
            } else {
                "without --secure"
            }
        ))),
        Err(_) if cluster.join("kafka").exists() && secure => Err(UpError::DataDir(format!(
            "the local cluster in {} was first started without --secure; use another --data-dir",
            cluster.display()
        ))),
        Err(_) => {
            std::fs::create_dir_all(cluster).map_err(|e| {
                UpError::DataDir(format!("cannot create {}: {e}", cluster.display()))
            })?;
            std::fs::write(&marker, format!("{wanted}\n"))
                .map_err(|e| UpError::DataDir(format!("cannot write {}: {e}", marker.display())))
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), UpError> {
    let write = || -> std::io::Result<()> {
        let mut out = std::fs::File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)?;
        out.write_all(text.as_bytes())?;
        // A file that existed keeps its mode through `open`: set it.
        out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        out.sync_all()
    };
    write().map_err(|e| UpError::DataDir(format!("cannot write {}: {e}", path.display())))
}
