import Analysis
import ArgumentParser
import Engine
import Foundation
import Images
import Lens
import Train
import VitLensCore

@main
struct VitLens: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitlens",
        abstract: "Look inside Vision Transformers: checkpoints, features, attention — no PyTorch needed.",
        version: vitlensVersion,
        subcommands: [
            CKA.self, Similarity.self, Attention.self, Maps.self, Probe.self, Finetune.self, Plot.self, Merge.self, Inspect.self,
            Extract.self, Bench.self])

    /// Parses and runs the command with vitlens's error contract: one `error:` line on stderr,
    /// exit 64 for bad usage (before any work starts), 1 for any other failure.
    static func main() {
        VitLensProcess.prepare()
        installSignalCleanup()
        let command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }  // --help, --version
            fail(message(for: error).replacingOccurrences(of: "Error: ", with: ""), code: code.rawValue)
        }
        do {
            var c = command
            try c.run()
        } catch let e as ExitCode {
            finish(e.rawValue)
        } catch {
            // After Ctrl-C the staging folder vanishes under the run; that failure is not news.
            if interrupted { finish(1) }
            if exitCode(for: error) == .success { exit(withError: error) }  // help asked for by a command
            switch error {
            case let e as UsageError: fail(e.message, code: ExitCode.validationFailure.rawValue)
            case is ValidationError, is CleanExit: fail(message(for: error), code: exitCode(for: error).rawValue)
            default: fail("\(error)", code: 1)  // the library's errors name their file, tensor or shape
            }
        }
        finish(0)
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
        finish(code)
    }
}

/// A malformed, out-of-range or contradictory command line found after parsing (a head count
/// that does not divide the width, models that cannot run together): exit 64, before any work.
struct UsageError: Error {
    let message: String
    init(_ m: String) { message = m }
}

/// A failure the command line itself words (exit 1).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Notices, warnings and a progress line (images done, images/s, ETA) on stderr; the progress
/// line only on a terminal.
final class Terminal: RunObserver {
    let quiet: Bool
    private var start: Date?, last = Date.distantPast
    private var showing = false
    init(quiet: Bool) { self.quiet = quiet }

    func notice(_ text: String) { if !quiet { say("notice: " + text) } }
    func warning(_ text: String) { say("warning: " + text) }
    func say(_ text: String) {
        if showing { FileHandle.standardError.write(Data("\n".utf8)); showing = false }
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    func progress(_ label: String, done: Int, total: Int) {
        guard !quiet, isatty(2) != 0 else { return }
        let now = Date()
        if start == nil { start = now }
        guard done == total || now.timeIntervalSince(last) > 0.2 else { return }
        last = now
        let t = now.timeIntervalSince(start!), rate = t > 0 ? Double(done) / t : 0
        let eta = Int((rate > 0 ? Double(total - done) / rate : 0).rounded())
        let etaText = eta >= 3600 ? "\(eta / 3600)h\(eta % 3600 / 60)m" : eta >= 60 ? "\(eta / 60)m\(eta % 60)s"
            : "\(eta)s"
        FileHandle.standardError.write(
            Data(String(format: "\r%@: %d/%d images, %.1f img/s, ETA %@   ", label, done, total, rate, etaText).utf8))
        showing = true
    }

    func progressEnded() {
        if showing { FileHandle.standardError.write(Data("\n".utf8)) }
        showing = false
        start = nil
    }

    /// The closing line of a run that wrote a report.
    func wrote(_ dir: String, _ files: [String], _ tail: String = "") {
        if !quiet { say("wrote \(dir)/{\(files.joined(separator: ", "))}" + tail) } }
}

var commandLine: String { CommandLine.arguments.joined(separator: " ") }

/// Opens the report folder of `command`: `--out`, else `fallback`; files are staged and appear
/// only when `body` returns. Nothing is lost: a folder holding another command's report is
/// refused; the same command's report named by --out is replaced whole; a default folder that
/// already holds a report is kept, and the new one gets the next free numbered name.
/// `command` nil (plot): the figures are written into the folder beside what it holds.
func writingReport(_ out: String?, default fallback: String, command: String?, _ terminal: Terminal,
                   _ body: (OutputDirectory) throws -> [String]) throws -> (String, [String]) {
    var path = out ?? fallback
    while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
    if let command, let held = OutputDirectory.reportCommand(in: path) {
        guard held == command else {
            throw Failure(
                "\(out != nil ? "--out " : "")\(path) holds a \(held) report; a \(command) report is not written "
                + "over it (choose another --out)")
        }
        if out == nil {
            var n = 2
            while FileManager.default.fileExists(atPath: "\(path)-\(n)") { n += 1 }
            terminal.notice("\(path) holds an earlier report; this one goes to \(path)-\(n) (--out DIR to choose)")
            path = "\(path)-\(n)"
        } else {
            terminal.notice("replacing the \(command) report in \(path)")
        }
    }
    let dir: OutputDirectory
    do { dir = try OutputDirectory(path) } catch OutputError.notADirectory(let p) {
        throw Failure("--out \(p): exists and is not a folder")
    }
    defer { dir.discard() }
    let files = try body(dir)
    try dir.commit(replace: command != nil)
    return (dir.finalPath, files)
}

/// SIGINT/SIGTERM: remove half-written report folders, then exit 128 + signal. The work runs on
/// a dispatch queue, not inside the signal handler, where file-system calls are not safe.
nonisolated(unsafe) var signalSources: [DispatchSourceSignal] = []
/// Set first thing on SIGINT/SIGTERM; from then on only the interrupt handler ends the process.
nonisolated(unsafe) var interrupted = false

/// Exits, unless an interrupt is being handled: then waits for its handler to exit with 128 + signal.
func finish(_ code: Int32) -> Never {
    if interrupted { while true { pause() } }
    exit(code)
}

func installSignalCleanup() {
    for sig in [SIGINT, SIGTERM] {
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            interrupted = true
            OutputDirectory.removeAllStaging()
            FileHandle.standardError.write(Data("\nerror: interrupted; no report was written\n".utf8))
            _exit(128 + sig)  // not exit(): OpenBLAS's destructor can deadlock joining its threads here
        }
        source.resume()
        signalSources.append(source)
    }
}
