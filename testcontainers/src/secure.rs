//! A secured local cluster: SCRAM-SHA-512 over TLS on the client listener, with a CA made at
//! first start, Kafka's `StandardAuthorizer` (`allow.everyone.if.no.acl.found=false`), an
//! `broker-admin` super user and one SCRAM user per name asked for. The controller listener stays
//! plaintext on loopback; its principal (`ANONYMOUS`) is a super user so the combined node can
//! talk to itself. Users get no ACLs here: [`LocalCluster::create_acls`] grants them.
//!
//! The TLS material and passwords are kept under the broker's folder, mode 0600, so a restart
//! on the same folder reuses them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The admin super user's name.
pub const ADMIN: &str = "broker-admin";

/// What clients of a secured cluster need: the CA and each user's password.
#[derive(Debug, Clone)]
pub struct Security {
    /// The CA the broker's certificate is signed by (PEM).
    pub ca_file: PathBuf,
    /// Every SCRAM user (the admin too) and its password.
    pub passwords: BTreeMap<String, String>,
    /// The broker's PKCS12 keystore and its password.
    pub(crate) keystore: PathBuf,
    pub(crate) keystore_password: String,
}

/// One ACL to create: `principal` (`User:name`) may do `operation` (`READ`, `WRITE`,
/// `DESCRIBE`, `DESCRIBE_CONFIGS`, …) on a resource (`TOPIC`, `GROUP`, `TRANSACTIONAL_ID`,
/// `CLUSTER`) named `name` (`kafka-cluster` for the cluster), as a `LITERAL` or `PREFIXED` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub principal: String,
    pub resource_type: &'static str,
    pub name: String,
    pub pattern: &'static str,
    pub operation: &'static str,
}

fn secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(Error::io(format!("protecting {}", path.display())))
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(Error::io(
            "running openssl (install it: scripts/install-deps)",
        ))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "openssl {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

impl Security {
    /// The material under `dir` (made the first time) for `users` besides the admin.
    pub(crate) fn prepare(dir: &Path, users: &[String]) -> Result<Security> {
        fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let ca_file = dir.join("ca.pem");
        let keystore = dir.join("broker.p12");
        let keystore_password_file = dir.join("keystore-password");
        if !keystore.is_file() {
            let password = secret();
            write_private(&keystore_password_file, &password)?;
            fs::write(
                dir.join("broker.ext"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            )
            .map_err(Error::io("writing the certificate extensions"))?;
            let pass = format!("pass:{password}");
            for args in [
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=scanstream local CA",
                ][..],
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    "broker.key",
                    "-out",
                    "broker.csr",
                    "-subj",
                    "/CN=localhost",
                ][..],
                &[
                    "x509",
                    "-req",
                    "-in",
                    "broker.csr",
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    "broker.pem",
                    "-days",
                    "3650",
                    "-extfile",
                    "broker.ext",
                ][..],
                &[
                    "pkcs12",
                    "-export",
                    "-in",
                    "broker.pem",
                    "-inkey",
                    "broker.key",
                    "-certfile",
                    "ca.pem",
                    "-out",
                    "broker.p12",
                    "-passout",
                    &pass,
                ][..],
            ] {
                openssl(dir, args)?;
            }
            for key in ["ca.key", "broker.key"] {
                let _ = fs::set_permissions(dir.join(key), fs::Permissions::from_mode(0o600));
            }
        }
        let keystore_password = fs::read_to_string(&keystore_password_file)
            .map_err(Error::io(format!(
                "reading {}",
                keystore_password_file.display()
            )))?
            .trim()
            .to_owned();
        let mut passwords = BTreeMap::new();
        for user in std::iter::once(ADMIN.to_owned()).chain(users.iter().cloned()) {
            let file = dir.join(format!("{user}.password"));
            let password = match fs::read_to_string(&file) {
                Ok(p) if !p.trim().is_empty() => p.trim().to_owned(),
                _ => {
                    let p = secret();
                    write_private(&file, &p)?;
                    p
                }
            };
            passwords.insert(user, password);
        }
        Ok(Security {
            ca_file,
            passwords,
            keystore,
            keystore_password,
        })
    }

    /// librdkafka settings for `user` (besides `bootstrap.servers`).
    pub fn client_config(&self, user: &str) -> Vec<(String, String)> {
        vec![
            ("security.protocol".into(), "sasl_ssl".into()),
            ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
            ("sasl.username".into(), user.into()),
            (
                "sasl.password".into(),
                self.passwords.get(user).cloned().unwrap_or_default(),
            ),
            ("ssl.ca.location".into(), self.ca_file.display().to_string()),
        ]
    }

    /// The broker's settings for the client listener, the authorizer and the users.
    pub(crate) fn server_properties(&self) -> String {
        let admin = self.passwords.get(ADMIN).cloned().unwrap_or_default();
        format!(
            "sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{ADMIN}\" password=\"{admin}\";
ssl.keystore.type=PKCS12
ssl.keystore.location={keystore}
ssl.keystore.password={password}
ssl.key.password={password}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{ADMIN};User:ANONYMOUS
",
            keystore = self.keystore.display(),
            password = self.keystore_password,
            ca = self.ca_file.display(),
        )
    }

    /// `--add-scram` arguments of the storage format for every user.
    pub(crate) fn scram_arguments(&self) -> Vec<String> {
        self.passwords
            .iter()
            .flat_map(|(user, password)| {
                [
                    "--add-scram".to_owned(),
                    format!("SCRAM-SHA-512=[name={user},password={password}]"),
                ]
            })
            .collect()
    }

    /// The admin's client settings as a Java properties file under `dir`, for Kafka's tools.
    pub(crate) fn admin_properties(&self, dir: &Path) -> Result<PathBuf> {
        let admin = self.passwords.get(ADMIN).cloned().unwrap_or_default();
        let file = dir.join("admin.properties");
        write_private(
            &file,
            &format!(
                "security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{ADMIN}\" password=\"{admin}\";
ssl.truststore.type=PEM
ssl.truststore.location={}
",
                self.ca_file.display()
            ),
        )?;
        Ok(file)
    }
}

/// The ACL tool's source, run by `java` from a file next to the broker's material.
pub(crate) const CREATE_ACLS_JAVA: &str = include_str!("../java/CreateAcls.java");

/// The lines of the ACL tool's input.
pub(crate) fn acl_lines(acls: &[Acl]) -> String {
    acls.iter()
        .map(|a| {
            format!(
                "{}\t{}\t{}\t{}\t{}\n",
                a.principal, a.resource_type, a.name, a.pattern, a.operation
            )
        })
        .collect()
}

/// The ACLs of `principals` (what the roles declare in `scanstream_platform::access`), each
/// for the SCRAM user named after the role.
pub fn acls(principals: &[scanstream_platform::access::Principal]) -> Vec<Acl> {
    use scanstream_platform::access::{Operation, Pattern, Resource};
    let mut out = Vec::new();
    for principal in principals {
        for grant in &principal.grants {
            let (resource_type, name) = match &grant.resource {
                Resource::Topic(n) => ("TOPIC", n.clone()),
                Resource::Group(n) => ("GROUP", n.clone()),
                Resource::TransactionalId(n) => ("TRANSACTIONAL_ID", n.clone()),
                Resource::Cluster => ("CLUSTER", "kafka-cluster".to_owned()),
            };
            for operation in grant.operations {
                out.push(Acl {
                    principal: format!("User:{}", principal.name),
                    resource_type,
                    name: name.clone(),
                    pattern: match grant.pattern {
                        Pattern::Literal => "LITERAL",
                        Pattern::Prefix => "PREFIXED",
                    },
                    operation: match operation {
                        Operation::Read => "READ",
                        Operation::Write => "WRITE",
                        Operation::Describe => "DESCRIBE",
                        Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
                    },
                });
            }
        }
    }
    out
}
