import ArgumentParser
import Foundation
import VitLensCore
import Render

let vitlensVersion = "0.1.0"

@main
struct VitLens: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vitlens",
        abstract: "Look inside Vision Transformers: checkpoints, features, attention — no PyTorch needed.",
        version: vitlensVersion,
        subcommands: [Inspect.self, Extract.self])

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
            if exitCode(for: error) == .validationFailure {
                let message = self.message(for: error)
                FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
                Foundation.exit(ExitCode.validationFailure.rawValue)
            }
            FileHandle.standardError.write(Data(("error: \(error)\n").utf8))
            Foundation.exit(1)
        }
        Foundation.exit(0)
    }
}

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
