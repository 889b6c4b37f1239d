/// One schema migration file, `migrations/NNNN_name.sql`, as embedded in the binary.
struct Migration: Sendable, Hashable {
    let version: Int
    let name: String
    let sql: String

    /// The file it was generated from, relative to the repository root.
    var fileName: String {
        let digits = String(version)
        return "migrations/" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits + "_\(name).sql"
    }
}
