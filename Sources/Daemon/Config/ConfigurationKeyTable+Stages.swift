/// Rows of the key table for how stages run (chunked copy, preflight), kept here so the
/// table stays under the size limit; `ConfigurationKeys.all` lists them in place.
extension ConfigurationKeys {
    static let copyChunkMiBKey = ConfigurationKey(
        "copy_chunk_mib", type: "int 64-65536", default: "1024",
        "guest MiB `convert` copies and journals at a time; a crash redoes at most one such chunk."
    ) { value, config throws(ConfigurationValue.Mismatch) in
        config.conversion.copyChunkMiB = try value.int(in: 64...65536)
    }

    static let dryRunKey = ConfigurationKey(
        "dry_run", type: "bool", default: "false",
        "a preflight instead of a conversion: probe, extract and the guest fix on throw-away overlays, then `<output_dir>/<vm>.preflight.json` (verdict, fix report, estimated size); the later stages are skipped and journaled as such, nothing is converted or published. See \"Preflight\"."
    ) { value, config throws(ConfigurationValue.Mismatch) in
        config.conversion.dryRun = try value.bool()
    }
}
