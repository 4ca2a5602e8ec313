import ArgumentParser
import Checkpoint
import Engine
import Foundation
import Images
import VitLensCore
import Render

let vitlensVersion = "0.1.0"

@main
struct VitLens: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitlens",
        abstract: "Look inside Vision Transformers: checkpoints, features, attention — no PyTorch needed.",
        version: vitlensVersion,
        subcommands: [CKA.self, Attention.self, Merge.self, Inspect.self, Extract.self, Bench.self])

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
            Foundation.exit(e.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success { exit(withError: error) }  // help asked for by a command
            // vitlens's own errors describe themselves; the rest go through the parser's wording.
            let message = error is VitLensError ? "\(error)" : self.message(for: error)
            FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
            Foundation.exit(error is VitLensError ? 1 : code.rawValue)
        }
        Foundation.exit(0)
    }
}

/// Errors raised by vitlens's modules (exit code 1, SPEC §9).
protocol VitLensError: Error, CustomStringConvertible {}
extension CheckpointError: VitLensError {}
extension EngineError: VitLensError {}
extension ImageError: VitLensError {}
extension OutputError: VitLensError {}
extension FileError: VitLensError {}

/// SIGINT/SIGTERM: remove half-written report folders, then die of the signal as usual.
func installSignalCleanup() {
    for sig in [SIGINT, SIGTERM] {
        signal(sig) { s in
            OutputDirectory.removeAllStaging()
            signal(s, SIG_DFL)
            raise(s)
        }
    }
}
