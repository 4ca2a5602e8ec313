import Analysis
import Checkpoint
import Foundation
import VitLensCore

/// A folder written by `vitlens extract`: one of its arrays, and what meta.json says of it.
struct ExtractFolder {
    let file: String
    let meta: JSONValue
    /// Leading class/register tokens of the array's token axis.
    let prefixTokens: Int

    /// nil when `path` is not a folder; an error when it is one without the extract's meta.json.
    init?(_ path: String, file name: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else { return nil }
        guard let data = FileManager.default.contents(atPath: path + "/meta.json"),
              let meta = try? JSONValue.parse(String(decoding: data, as: UTF8.self)),
              let p = meta[path: "architecture", "prefix_tokens"]?.intValue else {
            throw ArrayError.notExtractFolder(path: path)
        }
        guard meta[path: "files", name, "shape"] != nil else {
            throw ArrayError.extractLacks(path: path, file: name)
        }
        self.file = path + "/" + name
        self.meta = meta
        prefixTokens = meta[path: "files", name, "prefix_tokens"]?.intValue ?? p
    }
}
