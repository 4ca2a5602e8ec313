import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Images
import VitLensCore
import Render
import Train

let vitlensVersion = "0.1.0"

@main
struct VitLens: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitlens",
        abstract: "Look inside Vision Transformers: checkpoints, features, attention — no PyTorch needed.",
        version: vitlensVersion,
        subcommands: [CKA.self, Attention.self, Probe.self, Finetune.self, Plot.self, Merge.self, Inspect.self, Extract.self, Bench.self])

    /// Picks OpenBLAS's kernels before anything runs, then parses and runs the command with
    /// SPEC §9's error contract: one `error:` line on stderr, exit 64 for bad usage, 1 otherwise.
    static func main() {
        BLASKernelChoice.ensureBestKernel()
        installSignalCleanup()
        let command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }  // --help, --version
            let message = self.message(for: error).replacingOccurrences(of: "Error: ", with: "")
            FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
            Foundation.exit(code.rawValue)
        }
        do {
            var c = command
            try c.run()
        } catch let e as ExitCode {
            finish(e.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }  // help asked for by a command
            // After Ctrl-C the staging folder vanishes under the run; that failure is not news.
            if interrupted { finish(1) }
            // vitlens's own errors describe themselves; the rest go through the parser's wording.
            let message = error is VitLensError ? "\(error)" : self.message(for: error)
            FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
            finish(error is VitLensError ? 1 : code.rawValue)
        }
        finish(0)
    }
}

/// Errors raised by vitlens's modules (exit code 1, SPEC §9).
protocol VitLensError: Error, CustomStringConvertible {}
extension CheckpointError: VitLensError {}
extension EngineError: VitLensError {}
extension ImageError: VitLensError {}
extension OutputError: VitLensError {}
extension FileError: VitLensError {}
extension ReportError: VitLensError {}
extension CSVError: VitLensError {}
extension RenderError: VitLensError {}
extension FontError: VitLensError {}
extension TrainError: VitLensError {}

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
