import Foundation
import GRDB
import GRDBSQLite

/// A value in a query result, decoded so it can leave the database thread.
public enum QueryValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob(Data)

    init(_ dbValue: DatabaseValue) {
        switch dbValue.storage {
        case .null: self = .null
        case .int64(let i): self = .integer(i)
        case .double(let d): self = .real(d)
        case .string(let s): self = .text(s)
        case .blob(let b): self = .blob(b)
        }
    }

    /// Plain text for tables and CSV.
    public var text: String {
        switch self {
        case .null: ""
        case .integer(let i): String(i)
        case .real(let d): JSONWriter.formatDouble(d)
        case .text(let s): s
        case .blob(let b): b.base64EncodedString()
        }
    }

    public var json: JSONValue {
        switch self {
        case .null: .null
        case .integer(let i): .number(String(i))
        case .real(let d): JSONValue(d)
        case .text(let s): .string(s)
        case .blob(let b): .string(b.base64EncodedString())
        }
    }
}

/// Columns and rows of one statement.
public struct QueryResult: Sendable, Equatable {
    public var columns: [String]
    public var rows: [[QueryValue]]

    public func column(_ name: String) -> [QueryValue] {
        guard let i = columns.firstIndex(of: name) else { return [] }
        return rows.map { $0[i] }
    }
}

/// SQL that failed, with the file it came from.
public struct QueryError: Error, CustomStringConvertible {
    public let source: String
    public let reason: String
    public var description: String { "\(source): \(reason)" }
}

/// Runs the bundled `queries/*.sql` and users' SQL files. Parameters are SQLite named
/// parameters (`:run`); the bundled queries treat an unbound one (NULL) as "no filter", so the
/// same files run unchanged under the stock `sqlite3` shell.
public struct QueryRunner: Sendable {
    public let warehouse: Warehouse

    public init(_ warehouse: Warehouse) { self.warehouse = warehouse }

    /// Names of the bundled queries.
    public static var bundledNames: [String] {
        BundledFiles.paths(under: "queries").filter { $0.hasSuffix(".sql") }
            .map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
    }

    /// The SQL of a bundled query name or of a `.sql` file path.
    public static func sql(for nameOrPath: String) throws -> (source: String, sql: String) {
        if let text = BundledFiles.text("queries/\(nameOrPath).sql") { return ("queries/\(nameOrPath).sql", text) }
        if nameOrPath.hasSuffix(".sql") || nameOrPath.contains("/") {
            guard let data = FileManager.default.contents(atPath: nameOrPath) else {
                throw QueryError(source: nameOrPath, reason: "no such file")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw QueryError(source: nameOrPath, reason: "not valid UTF-8")
            }
            return (nameOrPath, text)
        }
        throw QueryError(source: nameOrPath, reason: "no bundled query of that name (bundled: \(bundledNames.joined(separator: ", "))); pass a .sql file path to run your own")
    }

    /// Runs every statement of `sql` and returns the result of each one that yields columns.
    /// Read-only unless `write` is set.
    public func run(sql: String, source: String, parameters: [String: String] = [:], write: Bool = false) throws -> [QueryResult] {
        let body: (Database) throws -> [QueryResult] = { db in
            try Self.run(sql: sql, source: source, parameters: parameters, in: db)
        }
        return write ? try warehouse.writer.write(body) : try warehouse.writer.read(body)
    }

    /// Runs a bundled query by name on a connection the caller holds (inside its transaction).
    public static func run(_ name: String, parameters: [String: String] = [:], in db: Database) throws -> [QueryResult] {
        let (source, sql) = try sql(for: name)
        return try run(sql: sql, source: source, parameters: parameters, in: db)
    }

    /// Runs every statement of `sql` on `db`; see `run(sql:source:parameters:write:)`.
    public static func run(sql: String, source: String, parameters: [String: String], in db: Database) throws -> [QueryResult] {
        var results: [QueryResult] = []
        var used = Set<String>()
        do {
            let statements = try db.allStatements(sql: sql)
            while let statement = try statements.next() {
                var arguments: [String: (any DatabaseValueConvertible)?] = [:]
                for name in Self.parameterNames(statement) {
                    let bare = String(name.dropFirst())
                    if let v = parameters[bare] {
                        arguments[bare] = Self.bindValue(v)
                        used.insert(bare)
                    } else {
                        arguments[bare] = nil as String?
                    }
                }
                statement.setUncheckedArguments(StatementArguments(arguments))
                let columns = statement.columnNames
                if columns.isEmpty {
                    try statement.execute()
                    continue
                }
                var rows: [[QueryValue]] = []
                let cursor = try Row.fetchCursor(statement)
                while let row = try cursor.next() {
                    rows.append((0..<row.count).map { QueryValue(row[$0] as DatabaseValue) })
                }
                results.append(QueryResult(columns: columns, rows: rows))
            }
        } catch let e as DatabaseError {
            throw QueryError(source: source, reason: e.message ?? "\(e)")
        }
        let unknown = Set(parameters.keys).subtracting(used)
        if !unknown.isEmpty {
            throw QueryError(source: source, reason: "unknown parameter(s) \(unknown.sorted().joined(separator: ", ")); the SQL uses \(Self.parameterNames(in: sql).joined(separator: ", "))")
        }
        return results
    }

    /// Runs a bundled query or SQL file by name.
    public func run(_ nameOrPath: String, parameters: [String: String] = [:], write: Bool = false) throws -> [QueryResult] {
        let (source, sql) = try Self.sql(for: nameOrPath)
        return try run(sql: sql, source: source, parameters: parameters, write: write)
    }

    private static func parameterNames(_ statement: Statement) -> [String] {
        let count = sqlite3_bind_parameter_count(statement.sqliteStatement)
        guard count > 0 else { return [] }
        return (1...count).compactMap { i in sqlite3_bind_parameter_name(statement.sqliteStatement, i).map { String(cString: $0) } }
    }

    /// The named parameters a SQL text mentions (for error messages).
    static func parameterNames(in sql: String) -> [String] {
        var names: [String] = []
        let pattern = try! NSRegularExpression(pattern: "(?<![:\\w]):([A-Za-z_][A-Za-z0-9_]*)")
        for m in pattern.matches(in: sql, range: NSRange(sql.startIndex..., in: sql)) {
            let n = String(sql[Range(m.range(at: 1), in: sql)!])
            if !names.contains(n) { names.append(n) }
        }
        return names
    }

    /// Binds integers and reals as numbers so comparisons with numeric columns work.
    /// Only text that reads back the same as the number is bound as one ("007" stays text).
    static func bindValue(_ v: String) -> any DatabaseValueConvertible {
        if let i = Int64(v), String(i) == v { return i }
        if let d = Double(v), d.isFinite, v.contains("."), "\(d)" == v { return d }
        return v
    }
}
