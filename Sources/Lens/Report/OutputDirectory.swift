import Foundation
import VitLensCore

public enum OutputError: Error, CustomStringConvertible {
    case notADirectory(String)
    case cannotWrite(path: String, reason: String)

    public var description: String {
        switch self {
        case let .notADirectory(p): return "\(p): exists and is not a folder"
        case let .cannotWrite(path, reason): return "\(path): cannot write (\(reason))"
        }
    }
}

/// A report folder written atomically (docs/reference.md, "Errors": no partial files): files go to a hidden staging
/// folder beside
/// the target and are renamed into place only by `commit()`. A run that fails or is
/// interrupted leaves no partial report: `discard()` (or the next run) removes the staging folder.
public final class OutputDirectory {
    public let finalPath: String
    public let stagingPath: String
    private var committed = false

    public init(_ path: String) throws {
        let fm = FileManager.default
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        finalPath = p
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: p, isDirectory: &isDir), !isDir.boolValue { throw OutputError.notADirectory(p) }
        let parent = (p as NSString).deletingLastPathComponent
        let base = (p as NSString).lastPathComponent
        stagingPath = (parent.isEmpty ? "." : parent) + "/.\(base).vitlens-tmp-\(getpid())"
        do {
            if !parent.isEmpty { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) }
            if fm.fileExists(atPath: stagingPath) { try fm.removeItem(atPath: stagingPath) }
            OutputDirectory.removeStale(in: parent.isEmpty ? "." : parent, base: base)
            try fm.createDirectory(atPath: stagingPath, withIntermediateDirectories: false)
        } catch {
            throw OutputError.cannotWrite(path: p, reason: Self.reason(error))
        }
        OutputDirectory.lock.lock()
        OutputDirectory.active.append(stagingPath)
        OutputDirectory.lock.unlock()
    }

    /// Staging folders left by runs that were killed outright (SIGKILL, power loss): those of
    /// processes that no longer exist are removed when the same report is written again.
    static func removeStale(in parent: String, base: String) {
        let prefix = ".\(base).vitlens-tmp-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent) else { return }
        for name in names where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { try? FileManager.default.removeItem(atPath: parent + "/" + name) }
        }
    }

    /// Staging folders of this process, removed on SIGINT/SIGTERM by `removeAllStaging()`.
    nonisolated(unsafe) static var active: [String] = []
    static let lock = NSLock()

    /// For the interrupt handler: removes every staging folder still open.
    public static func removeAllStaging() {
        lock.lock()
        defer { lock.unlock() }
        for p in active { try? FileManager.default.removeItem(atPath: p) }
    }

    /// The path a file of the report is written to before `commit()`.
    public func staged(_ name: String) -> String { stagingPath + "/" + name }

    public func write(_ name: String, _ text: String) throws {
        do { try text.write(toFile: staged(name), atomically: false, encoding: .utf8) } catch {
            throw OutputError.cannotWrite(path: staged(name), reason: Self.reason(error))
        }
    }

    /// A sub-folder of the report (e.g. `compare/`).
    public func makeFolder(_ name: String) throws {
        do { try FileManager.default.createDirectory(atPath: staged(name), withIntermediateDirectories: true) } catch {
            throw OutputError.cannotWrite(path: staged(name), reason: Self.reason(error))
        }
    }

    public func write(_ name: String, bytes: [UInt8]) throws {
        do { try Data(bytes).write(to: URL(fileURLWithPath: staged(name))) } catch {
            throw OutputError.cannotWrite(path: staged(name), reason: Self.reason(error))
        }
    }

    /// The command whose report a folder holds (by the files each command writes), or nil.
    public static func reportCommand(in dir: String) -> String? {
        let fm = FileManager.default
        for (file, command) in [("cka.csv", "cka"), ("attention.csv", "attention"), ("probe.csv", "probe"),
                                ("finetune.csv", "finetune"), ("meta.json", "extract")] where fm.fileExists(
                                    atPath: dir + "/" + file) {
            return command
        }
        if fm.fileExists(atPath: dir + "/partial.json") {
            return ((try? Partial.read(dir))?.command ?? "unknown") + " shard" }
        return nil
    }

    /// Moves the staged files into the report folder. A new folder is renamed into place in one
    /// step. An existing one is replaced whole (`replace`: the old folder is renamed aside, the
    /// new one into place, the old one removed), or, for `plot`, each staged file is renamed over
    /// its old version and the rest of the folder kept.
    public func commit(replace: Bool = true) throws {
        let fm = FileManager.default
        do {
            if !fm.fileExists(atPath: finalPath) {
                try fm.moveItem(atPath: stagingPath, toPath: finalPath)
            } else if replace {
                let old = stagingPath + "-old"
                try fm.moveItem(atPath: finalPath, toPath: old)
                try fm.moveItem(atPath: stagingPath, toPath: finalPath)
                try? fm.removeItem(atPath: old)
            } else {
                for name in try fm.contentsOfDirectory(atPath: stagingPath) {
                    let dst = finalPath + "/" + name
                    // A sub-folder replaces the old one whole (rename(2) cannot replace a non-empty folder).
                    var isDir: ObjCBool = false
                    if fm.fileExists(atPath: dst, isDirectory: &isDir),
                        isDir.boolValue { try fm.removeItem(atPath: dst) }
                    guard rename(staged(name), dst) == 0 else {
                        throw OutputError.cannotWrite(path: dst, reason: String(cString: strerror(errno)))
                    }
                }
                try fm.removeItem(atPath: stagingPath)
            }
        } catch let e as OutputError {
            throw e
        } catch {
            throw OutputError.cannotWrite(path: finalPath, reason: Self.reason(error))
        }
        committed = true
        OutputDirectory.lock.lock()
        OutputDirectory.active.removeAll { $0 == stagingPath }
        OutputDirectory.lock.unlock()
    }

    public func discard() {
        if !committed { try? FileManager.default.removeItem(atPath: stagingPath) }
        OutputDirectory.lock.lock()
        OutputDirectory.active.removeAll { $0 == stagingPath }
        OutputDirectory.lock.unlock()
    }

    deinit { discard() }

    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let u = ns.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(u.code)))
        }
        return ns.localizedDescription
    }
}
