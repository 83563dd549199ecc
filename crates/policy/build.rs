//! Converts the built-in profiles (`profiles/*.toml`) and the named host sets (`sets.toml`)
//! to JSON in `OUT_DIR`. The TOML files stay the source (and what `warden policy show`
//! prints); the hook, one process per tool call, deserializes the JSON: serde_json reads the
//! same data several times faster than the TOML parser. A unit test checks that both forms
//! give the same policy.
use std::path::Path;

fn main() {
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    for name in ["generic", "claude", "codex", "gemini"] {
        convert(
            &format!("profiles/{name}.toml"),
            &Path::new(&out).join(format!("{name}.json")),
        );
    }
    convert("sets.toml", &Path::new(&out).join("sets.json"));
}

fn convert(src: &str, dst: &Path) {
    println!("cargo:rerun-if-changed={src}");
    let text = std::fs::read_to_string(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let value: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{src}: {e}"));
    let json = serde_json::to_string(&value).unwrap_or_else(|e| panic!("{src}: {e}"));
    std::fs::write(dst, json).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
}
