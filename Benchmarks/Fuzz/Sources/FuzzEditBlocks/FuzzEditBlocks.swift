// A model's Agentless repair answer: SEARCH/REPLACE blocks parsed, then applied to a file made
// of the answer's own lines (so searches sometimes match, once or more than once).
import RolloutKit
import FuzzDriver

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = ModelAnswer.stripThinking(text)
    let fenced = ModelAnswer.fencedLines(text)
    _ = ModelAnswer.fileList(text)
    let (edits, _) = SearchReplace.parse(text)
    for edit in edits {
        var lines = fenced
        _ = try? SearchReplace.apply(edit, to: &lines, fileExists: true)
        var empty: [String] = []
        _ = try? SearchReplace.apply(edit, to: &empty, fileExists: false)
    }
    return 0
}

@main enum Main {
    static func main() { runFuzzer(fuzz) }
}
