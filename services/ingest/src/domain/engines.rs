use super::Invalid;

/// An engine id the deployment knows (`ingest.engines`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineId(String);

impl EngineId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The engines a request may name.
#[derive(Debug, Clone)]
pub struct EngineSet {
    known: Vec<String>,
    default: Vec<String>,
}

impl EngineSet {
    pub const MAX_PER_REQUEST: usize = 16;

    pub fn new(known: Vec<String>, default: Vec<String>) -> Self {
        Self { known, default }
    }

    /// The requested engines, or the defaults when none are named.
    pub fn parse(&self, requested: Option<&[String]>) -> Result<Vec<EngineId>, Invalid> {
        let requested = match requested {
            None => return Ok(self.default.iter().cloned().map(EngineId).collect()),
            Some([]) => {
                return Err(Invalid::new(
                    "required",
                    "engines must name at least one engine, or be left out",
                ));
            }
            Some(list) => list,
        };
        if requested.len() > Self::MAX_PER_REQUEST {
            return Err(Invalid::new(
                "too-many",
                format!("at most {} engines per request", Self::MAX_PER_REQUEST),
            ));
        }
        let mut out: Vec<EngineId> = Vec::with_capacity(requested.len());
        for engine in requested {
            if !self.known.contains(engine) {
                let shown: String = engine.chars().take(64).collect();
                return Err(Invalid::new(
                    "known-engine",
                    format!(
                        "unknown engine {shown:?}; known engines: {}",
                        self.known.join(", ")
                    ),
                ));
            }
            if out.iter().any(|e| &e.0 == engine) {
                return Err(Invalid::new(
                    "unique",
                    format!("engine {engine:?} is listed twice"),
                ));
            }
            out.push(EngineId(engine.clone()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> EngineSet {
        EngineSet::new(
            vec!["secrets".into(), "semgrep".into()],
            vec!["secrets".into()],
        )
    }

    #[test]
    fn defaults_apply_when_none_are_named() {
        let engines = set().parse(None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            engines.iter().map(EngineId::as_str).collect::<Vec<_>>(),
            ["secrets"]
        );
    }

    #[test]
    fn unknown_duplicate_and_empty_lists_are_refused() {
        let s = set();
        assert_eq!(
            s.parse(Some(&["trufflehog".into()])).map_err(|e| e.rule),
            Err("known-engine")
        );
        assert_eq!(
            s.parse(Some(&["secrets".into(), "secrets".into()]))
                .map_err(|e| e.rule),
            Err("unique")
        );
        assert_eq!(s.parse(Some(&[])).map_err(|e| e.rule), Err("required"));
        assert!(s.parse(Some(&["semgrep".into(), "secrets".into()])).is_ok());
    }
}
