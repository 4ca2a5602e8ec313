import Checkpoint
import Engine
import Foundation
import Train
import VitLensCore

/// The image list of a run, or for long lists its SHA-256 (of the newline-joined paths) and count.
public func imagesJSON(_ paths: [String], folder: String) -> JSONValue {
    var fields: [(String, JSONValue)] = [("folder", .string(folder)), ("count", .int(paths.count)),
                                         ("paths_sha256", .string(Digest.sha256(paths.joined(separator: "\n"))))]
    if paths.count <= 4096 { fields.append(("paths", .array(paths.map { .string($0) }))) }
    return .object(fields)
}
