import ArgumentParser
import Foundation
import RolloutKit

@main
struct Rollout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "A SQLite warehouse for LLM agent rollouts: ingest datasets, run rollouts, grade, export.",
        discussion: """
            Every artifact lives in one SQLite file (default ./rollout.db, or --db / $ROLLOUT_DB).
            Start with `rollout quickstart`.
            """,
        subcommands: [Quickstart.self, Ingest.self, Run.self, Grade.self, Eval.self, Compare.self, Label.self, Export.self, BatchCommand.self, AgentlessCommand.self, Merge.self, Stats.self, Domains.self, Query.self, DB.self, Config.self, Chat.self, MockServerCommand.self, Tools.self, MCPServerCommand.self, Serve.self, Bench.self]
    )
}

/// Options every command that opens the warehouse shares.
struct WarehouseOptions: ParsableArguments {
    @Option(name: .long, help: "The warehouse file (default: $ROLLOUT_DB or ./rollout.db).")
    var db: String?

    var path: String { db ?? ProcessInfo.processInfo.environment["ROLLOUT_DB"] ?? Warehouse.defaultPath }

    /// Opens the warehouse; read-only commands do not create one.
    func open(create: Bool = true) throws -> Warehouse {
        // Another process's write (an ingest, a run) makes writers here wait: say so.
        Warehouse.onLockWait = { printError($0) }
        do {
            return try Warehouse.open(path: path, create: create)
        } catch let e as WarehouseError {
            throw CLIError(e.description)
        }
    }
}

/// How a command prints rows.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON.") var json = false
    @Flag(name: .long, help: "Print newline-delimited JSON (one object a line).") var nl = false
    @Flag(name: .long, help: "Print CSV.") var csv = false

    var format: ResultFormat {
        if json { return .json }
        if nl { return .nl }
        if csv { return .csv }
        return .table
    }

    func validate() throws {
        if [json, nl, csv].filter({ $0 }).count > 1 { throw ValidationError("choose one of --json, --nl, --csv") }
    }
}

/// An error for the user. Messages quote data (file contents, names from the warehouse, a
/// peer's message), so secrets are masked and terminal escapes and bidi overrides are printed
/// as visible markers: it is the last stop before the terminal.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = VisibleText.terminal(Secrets.mask(description)) }
}

/// Runs `body`, turning library errors into messages (ArgumentParser prints them and exits 1).
func reporting<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch { throw userFacing(error) }
}

/// Async twin of `reporting`.
func reportingAsync<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch { throw userFacing(error) }
}

/// An error as the user should read it: our messages as they are, library errors by their
/// description.
func userFacing(_ error: any Error) -> any Error {
    switch error {
    case is CLIError: error
    case let e as ValidationError: ValidationError(VisibleText.terminal(Secrets.mask(e.message)))
    case let e as CustomStringConvertible & Error: CLIError(e.description)
    default: error
    }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((VisibleText.terminal(Secrets.mask(text)) + "\n").utf8))
}
