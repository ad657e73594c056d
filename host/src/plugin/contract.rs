//! Reads what a component claims to be, before anything is compiled.
//!
//! This module owns the contract-version check and the list of a component's imports. It only
//! parses section headers with `wasmparser`; it must never compile, instantiate or run
//! component code, so refusing an unsupported component costs almost nothing.

use std::fmt;

use wasmparser::{Encoding, Parser, Payload};

use super::PluginError;

/// Contract versions this host serves, as `major.minor` (any patch level is accepted).
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.1"];

/// Name of the custom section in which the provider SDK stamps the contract version.
pub const CONTRACT_SECTION: &str = "tessera:contract-version";

/// The exported interface every provider component implements, without its `@version`.
pub const PROVIDER_INTERFACE: &str = "tessera:provider/provider";

/// A provider contract version (`tessera:provider@MAJOR.MINOR.PATCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractVersion {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
}

impl ContractVersion {
    /// Parses `MAJOR.MINOR.PATCH`; anything else (pre-release tags included) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self {
            major,
            minor,
            patch,
        })
    }

    /// Whether this host serves the version (see [`SUPPORTED_CONTRACTS`]).
    pub fn is_supported(self) -> bool {
        let prefix = format!("{}.{}", self.major, self.minor);
        SUPPORTED_CONTRACTS.contains(&prefix.as_str())
    }
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The supported versions as people read them: `0.1.x`.
pub fn supported_contracts() -> String {
    SUPPORTED_CONTRACTS
        .iter()
        .map(|v| format!("{v}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`inspect`] learned from a component's sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentManifest {
    /// The contract version the component exports (and, where present, stamps).
    pub contract: ContractVersion,
    /// Names of the component's top-level imports (`wasi:cli/environment@0.2.6`, ...).
    pub imports: Vec<String>,
}

/// Lists a component's top-level import names without compiling it.
pub fn component_imports(bytes: &[u8], component: &str) -> Result<Vec<String>, PluginError> {
    Ok(scan(bytes, component)?.imports)
}

/// Checks the contract version and lists imports, without compiling.
///
/// The component must export `tessera:provider/provider@X.Y.Z` with a supported `X.Y`; if it
/// also carries a `tessera:contract-version` custom section (at any nesting depth), that must
/// name the same version.
pub fn inspect(bytes: &[u8], component: &str) -> Result<ComponentManifest, PluginError> {
    let scan = scan(bytes, component)?;
    let unsupported = |found: String| PluginError::UnsupportedContract {
        component: component.to_owned(),
        found,
        supported: supported_contracts(),
    };
    // Every version the component claims must be one we serve; the first bad one is reported.
    for claim in scan.exported.iter().chain(&scan.stamped) {
        match ContractVersion::parse(claim) {
            Some(v) if v.is_supported() => {}
            _ => return Err(unsupported(claim.clone())),
        }
    }
    let exported = match scan.exported.as_slice() {
        [] => {
            let found = scan
                .stamped
                .first()
                .cloned()
                .unwrap_or_else(|| "none".to_owned());
            return Err(if scan.stamped.is_empty() {
                unsupported(found)
            } else {
                invalid(
                    component,
                    format!("it stamps contract {found} but does not export {PROVIDER_INTERFACE}"),
                )
            });
        }
        [one] => one,
        _ => {
            return Err(invalid(
                component,
                "it exports the provider interface more than once",
            ));
        }
    };
    if let Some(stamped) = scan.stamped.iter().find(|s| *s != exported) {
        return Err(invalid(
            component,
            format!(
                "it exports contract {exported} but its `{CONTRACT_SECTION}` section says {stamped}"
            ),
        ));
    }
    let contract = ContractVersion::parse(exported).ok_or_else(|| unsupported(exported.clone()))?;
    Ok(ComponentManifest {
        contract,
        imports: scan.imports,
    })
}

fn invalid(component: &str, reason: impl Into<String>) -> PluginError {
    PluginError::Invalid {
        component: component.to_owned(),
        reason: reason.into(),
    }
}

struct Scan {
    exported: Vec<String>,
    stamped: Vec<String>,
    imports: Vec<String>,
}

fn scan(bytes: &[u8], component: &str) -> Result<Scan, PluginError> {
    let mut out = Scan {
        exported: Vec::new(),
        stamped: Vec::new(),
        imports: Vec::new(),
    };
    let mut depth = 0usize;
    let parse_err = |e: wasmparser::BinaryReaderError| invalid(component, e.to_string());
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(parse_err)? {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(invalid(
                        component,
                        "it is a core WebAssembly module, not a component",
                    ));
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let name = export.map_err(parse_err)?.name.0;
                    if name == PROVIDER_INTERFACE {
                        out.exported.push("unversioned".to_owned());
                    } else if let Some(version) = name
                        .strip_prefix(PROVIDER_INTERFACE)
                        .and_then(|rest| rest.strip_prefix('@'))
                    {
                        out.exported.push(version.to_owned());
                    }
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    out.imports
                        .push(import.map_err(parse_err)?.name.0.to_owned());
                }
            }
            Payload::CustomSection(reader) if reader.name() == CONTRACT_SECTION => {
                let text = std::str::from_utf8(reader.data()).map_err(|_| {
                    invalid(component, format!("`{CONTRACT_SECTION}` is not UTF-8"))
                })?;
                out.stamped.push(
                    text.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                        .to_owned(),
                );
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_only_0_1_is_supported() {
        let v = ContractVersion::parse("0.1.7").unwrap();
        assert_eq!(v.to_string(), "0.1.7");
        assert!(v.is_supported());
        assert!(
            !ContractVersion {
                major: 0,
                minor: 2,
                patch: 0
            }
            .is_supported()
        );
        assert!(
            !ContractVersion {
                major: 1,
                minor: 1,
                patch: 0
            }
            .is_supported()
        );
        assert_eq!(ContractVersion::parse("0.1"), None);
        assert_eq!(ContractVersion::parse("0.1.0-rc1"), None);
    }

    #[test]
    fn core_module_is_rejected_before_anything_else() {
        let core = b"\0asm\x01\0\0\0";
        let err = inspect(core, "core.wasm").map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("core WebAssembly module"), "{err}");
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let err = inspect(b"not wasm at all", "junk.wasm")
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, PluginError::Invalid { .. }), "{err}");
    }
}
