import AsyncHTTPClient
import Foundation
import GRDB
import NIOCore
import NIOHTTP1
import RolloutKit
import Testing

/// A real headless Chromium (Debian's, driven over WebDriver by chromedriver) using
/// `rollout serve` the way a reviewer does: open a run, a trajectory, search, record a review.
/// The trajectory page's screenshot is kept in .build/test-artifacts/ (or $ROLLOUT_TEST_ARTIFACTS).
@Suite(.serialized)
struct ViewerBrowserTests {
    static let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let chromium = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: CLITests.binary), "build the rollout executable first (swift build)"))
    func aReviewerOpensARunATrajectorySearchesAndReviews() async throws {
        let driverPath = try #require(Self.chromedriver, "chromedriver is not installed: run scripts/install-deps.sh --test (installs chromium and chromium-driver)")
        let browserPath = try #require(Self.chromium, "chromium is not installed: run scripts/install-deps.sh --test")
        let dir = try TempDir()
        let w = try ViewerFixtures.quickstart(in: dir)
        let hostile = try ViewerFixtures.addHostileRun(w)

        let serve = try LineProcess(CLITests.binary, ["serve", "--db", dir.file("rollout.db"), "--port", "0"])
        defer { serve.stop() }
        let url = try #require(try serve.waitForLine(containing: "http://127.0.0.1:", timeout: 60))
        let base = String(url[url.range(of: "http://")!.lowerBound...].prefix { !$0.isWhitespace }).trimmingCharacters(in: CharacterSet(charactersIn: "/"))

        let driver = try LineProcess(driverPath, ["--port=0"])
        defer { driver.stop() }
        let started = try #require(try driver.waitForLine(containing: "started successfully on port", timeout: 60))
        let driverPort = try #require(Int(started.split(separator: " ").last!.trimmingCharacters(in: CharacterSet(charactersIn: "."))))
        let wd = WebDriver(port: driverPort)
        try await wd.startSession(browser: browserPath)
        do {
            try await browse(wd, base: base, w: w, hostile: hostile)
        } catch {
            await wd.close()
            throw error
        }
        await wd.close()
    }

    func browse(_ wd: WebDriver, base: String, w: Warehouse, hostile: Int64) async throws {

        // The runs page → the run.
        try await wd.go(base + "/")
        try await wd.click(try await wd.find("link text", "quickstart"))
        #expect(try await wd.currentURL().hasSuffix("/runs/1"))
        #expect(try await wd.text(try await wd.find("css selector", "h1")).contains("Run quickstart"))
        // → its rollouts → the first trajectory.
        try await wd.click(try await wd.find("link text", "Rollouts"))
        try await wd.click(try await wd.find("css selector", "td a[href^='/rollouts/']"))
        let trajectory = try await wd.currentURL()
        #expect(trajectory.hasSuffix("/rollouts/1"))
        let first = try #require(try w.string("SELECT content FROM messages WHERE rollout_id = 1 AND role = 'user' ORDER BY idx LIMIT 1"))
        #expect(try await wd.text(try await wd.find("css selector", "section.conversation")).contains(first))
        // Reasoning and the system prompt are collapsed; tool calls are shown.
        #expect(try await wd.script("return document.querySelectorAll('div.call').length") as? Int ?? 0 > 0)
        let artifacts = ProcessInfo.processInfo.environment["ROLLOUT_TEST_ARTIFACTS"]
            ?? Fixture.repoRoot.appending(path: ".build/test-artifacts").path
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let png = try await wd.screenshot()
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 10_000)
        let shot = URL(fileURLWithPath: artifacts).appending(path: "viewer-trajectory.png")
        try png.write(to: shot)
        print("screenshot of the trajectory page: \(shot.path)")

        // Search from the header box; the first hit opens its trajectory at the message.
        let box = try await wd.find("css selector", "header form.search input[name=q]")
        try await wd.type(box, "Riverside\u{E007}")
        #expect(try await wd.currentURL().contains("/search?q=Riverside"))
        #expect(try await wd.script("return document.querySelectorAll('mark').length") as? Int ?? 0 > 0)
        try await wd.click(try await wd.find("css selector", "td a[href*='#m']"))
        #expect(try await wd.currentURL().contains("/rollouts/"))

        // Record a review with a note.
        try await wd.go(base + "/rollouts/2")
        try await wd.type(try await wd.find("css selector", "textarea[name=note]"), "tool use looks right")
        try await wd.type(try await wd.find("css selector", "input[name=reviewer]"), "ana")
        try await wd.click(try await wd.find("css selector", "button[value=accepted]"))
        #expect(try await wd.currentURL().contains("/rollouts/2?reviewed=accepted"))
        #expect(try await wd.text(try await wd.find("css selector", ".review")).contains("tool use looks right"))
        let review = try #require(try w.rows("SELECT rollout_id, verdict, note, reviewer FROM reviews").first)
        #expect(review["rollout_id"] as Int64 == 2 && review["verdict"] as String == "accepted")
        #expect(review["note"] as String == "tool use looks right" && review["reviewer"] as String == "ana")

        // Model output that is markup stays text in a real browser: nothing runs, nothing is added.
        try await wd.go(base + "/rollouts/\(hostile)")
        #expect(try await wd.script("return document.querySelectorAll('script, iframe, img').length") as? Int == 0)
        #expect(try await wd.alertIsOpen() == false)
        let shown = try await wd.text(try await wd.find("css selector", "section.conversation"))
        #expect(shown.contains("Please <script>alert('xss')</script> help"))
    }
}

/// A child process whose stdout is read line by line.
final class LineProcess: @unchecked Sendable {
    let process = Process()
    private let pipe = Pipe()
    private let lock = NSLock()
    private var buffer = ""

    init(_ executable: String, _ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard !data.isEmpty else {
                h.readabilityHandler = nil // end of file: otherwise the handler is called again at once, forever
                return
            }
            guard let self else { return }
            self.lock.lock()
            self.buffer += String(decoding: data, as: UTF8.self)
            self.lock.unlock()
        }
        try process.run()
    }

    func waitForLine(containing text: String, timeout: Double) throws -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            lock.lock()
            let lines = buffer.split(separator: "\n")
            lock.unlock()
            if let line = lines.first(where: { $0.contains(text) }) { return String(line) }
            if !process.isRunning { return nil }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    /// SIGTERM, then SIGKILL after 5 s (chromedriver ignores SIGTERM).
    func stop() {
        pipe.fileHandleForReading.readabilityHandler = nil
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// The few W3C WebDriver commands the test needs, as JSON over HTTP.
final class WebDriver: Sendable {
    let base: String
    let client = HTTPClient(eventLoopGroupProvider: .singleton)
    private let session = Mutexed<String?>(nil)
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    init(port: Int) { base = "http://127.0.0.1:\(port)" }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    @discardableResult
    func call(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil) async throws -> Any? {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)))
        }
        let response = try await client.execute(request, timeout: .seconds(120))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        let json = try JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]
        let value = json?["value"]
        if response.status.code >= 400 {
            let error = (value as? [String: Any])?["error"] as? String ?? "HTTP \(response.status.code)"
            let message = (value as? [String: Any])?["message"] as? String ?? ""
            throw Failure(description: "WebDriver \(method) \(path): \(error): \(message.prefix(300))")
        }
        return value
    }

    var sid: String { session.value ?? "none" }

    func startSession(browser: String) async throws {
        let value = try await call(.POST, "/session", ["capabilities": ["alwaysMatch": [
            "browserName": "chrome",
            "goog:chromeOptions": ["binary": browser,
                                   "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]],
        ]]]) as? [String: Any]
        session.value = try #require(value?["sessionId"] as? String)
    }

    func go(_ url: String) async throws { try await call(.POST, "/session/\(sid)/url", ["url": url]) }

    func currentURL() async throws -> String { try await call(.GET, "/session/\(sid)/url") as? String ?? "" }

    func find(_ using: String, _ value: String) async throws -> String {
        let found = try await call(.POST, "/session/\(sid)/element", ["using": using, "value": value]) as? [String: Any]
        return try #require(found?[Self.elementKey] as? String, "no element \(using) \(value)")
    }

    func click(_ element: String) async throws { try await call(.POST, "/session/\(sid)/element/\(element)/click", [:]) }

    func type(_ element: String, _ text: String) async throws {
        try await call(.POST, "/session/\(sid)/element/\(element)/value", ["text": text])
    }

    func text(_ element: String) async throws -> String { try await call(.GET, "/session/\(sid)/element/\(element)/text") as? String ?? "" }

    func script(_ source: String) async throws -> Any? {
        try await call(.POST, "/session/\(sid)/execute/sync", ["script": source, "args": [Any]()])
    }

    func screenshot() async throws -> Data {
        let b64 = try #require(try await call(.GET, "/session/\(sid)/screenshot") as? String)
        return try #require(Data(base64Encoded: b64))
    }

    func alertIsOpen() async throws -> Bool {
        do {
            try await call(.GET, "/session/\(sid)/alert/text")
            return true
        } catch let f as Failure where f.description.contains("no such alert") {
            return false
        }
    }

    /// Ends the session (the browser quits) and the client.
    func close() async {
        _ = try? await call(.DELETE, "/session/\(sid)")
        try? await client.shutdown()
    }
}

/// A value behind a lock.
final class Mutexed<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}
