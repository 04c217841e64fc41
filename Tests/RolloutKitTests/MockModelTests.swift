import Foundation
import RolloutKit
import Testing

/// The built-in mock model and its schema sampler (see the doc comment on `MockModel`).
@Suite("MockModel")
struct MockModelTests {
    // MARK: Helpers

    static let toolFiles: [(label: String, path: String)] = [
        ("τ² retail", Fixture.path("mock-model/tau2_retail_agent_tools.json")),
        ("τ² mock", Fixture.path("mock-model/tau2_mock_agent_tools.json")),
        ("τ-bench retail", Fixture.path("mock-model/tau_bench_retail_tools.json")),
        ("example Library", Fixture.repoRoot.appending(path: "examples/rollout-layout/single_domain/tool_lists/Library.json").path),
        ("example CityTransit", Fixture.repoRoot.appending(path: "examples/rollout-layout/single_domain/tool_lists/CityTransit.json").path),
    ]

    static func loadTools(_ path: String) throws -> [ToolSpecification] {
        let list = try #require(try JSONParser.parse(String(contentsOfFile: path, encoding: .utf8)).arrayValue)
        return try list.map { entry in
            let function = try #require(entry["function"])
            return ToolSpecification(name: try #require(function["name"]?.stringValue),
                                     description: function["description"]?.stringValue,
                                     parameters: try #require(function["parameters"]))
        }
    }

    static func conversation(_ k: Int, system: String = "You are a helpful customer service agent.") -> [ChatMessage] {
        [ChatMessage(role: "system", content: system),
         ChatMessage(role: "user", content: "Hi, I need help with my order number \(k).")]
    }

    static func agent(seed: Int = 0, reasoning: Bool = false) -> MockModel {
        MockModel(role: .agent, settings: .init(seed: seed, reasoning: reasoning))
    }

    static func arguments(_ call: ToolCall) throws -> JSONValue { try JSONParser.parse(call.arguments) }

    static let libraryTools: [ToolSpecification] = (try? loadTools(toolFiles[3].path)) ?? []

    // MARK: Determinism

    @Test func sameRequestAndSeedGiveTheSameResponse() throws {
        let tools = try Self.loadTools(Self.toolFiles[0].path)
        for k in 0..<20 {
            let request = ChatRequest(model: "agent", messages: Self.conversation(k), tools: tools)
            let a = Self.agent(seed: 7).respond(to: request)
            let b = Self.agent(seed: 7).respond(to: request)
            #expect(a == b)
        }
        let user = MockModel(role: .user, settings: .init(seed: 3))
        let request = ChatRequest(model: "user", messages: [ChatMessage(role: "system", content: "Your goal: renew a loan."),
                                                            ChatMessage(role: "assistant", content: "Hi"),
                                                            ChatMessage(role: "user", content: "Sure.")])
        #expect(user.respond(to: request) == user.respond(to: request))
    }

    @Test func pinnedOutputIsStableAcrossProcessesAndVersions() throws {
        // Swift's Hasher is seeded per process; the mock must not be. These values were computed
        // once and must never change (the quickstart's numbers depend on them).
        let request = ChatRequest(model: "mock-agent", messages: Self.conversation(1), tools: Self.libraryTools)
        let response = Self.agent().respond(to: request)
        #expect(response.id == "mock-8578cf05044fbace")
        #expect(response.message.toolCalls.map(\.name) == ["list_loans"])
        #expect(response.message.toolCalls.map(\.arguments) == [#"{"member_id":"member_921"}"#])
    }

    @Test func differentSeedsAndConversationsGiveDifferentResponses() throws {
        let tools = try Self.loadTools(Self.toolFiles[0].path)
        var differentCalls = 0
        for k in 0..<40 {
            let request = ChatRequest(model: "agent", messages: Self.conversation(k), tools: tools)
            let a = Self.agent(seed: 0).respond(to: request)
            let b = Self.agent(seed: 1).respond(to: request)
            #expect(a.id != b.id)
            if a.message.toolCalls != b.message.toolCalls { differentCalls += 1 }
        }
        #expect(differentCalls >= 30)
        // Same seed, different conversation: different key.
        let ids = Set((0..<100).map { k in Self.agent().respond(to: ChatRequest(model: "m", messages: Self.conversation(k))).id })
        #expect(ids.count == 100)
        // The request's own seed (e.g. the sample index) is mixed in.
        var options = ChatOptions()
        options.seed = 2
        let plain = Self.agent().respond(to: ChatRequest(model: "m", messages: Self.conversation(0), tools: tools))
        let seeded = Self.agent().respond(to: ChatRequest(model: "m", messages: Self.conversation(0), tools: tools, options: options))
        #expect(plain.id != seeded.id)
    }

    // MARK: Agent tool calls

    @Test(arguments: 0..<5)
    func everyToolGetsSchemaValidArguments(file: Int) throws {
        let (label, path) = Self.toolFiles[file]
        let tools = try Self.loadTools(path)
        #expect(!tools.isEmpty)
        for tool in tools {
            for seed in 0..<25 {
                let request = ChatRequest(model: "agent", messages: Self.conversation(seed), tools: [tool])
                let response = Self.agent(seed: seed).respond(to: request)
                #expect(response.finishReason == "tool_calls")
                #expect(response.message.role == "assistant")
                #expect(response.message.content == nil)
                let call = try #require(response.message.toolCalls.first)
                #expect(response.message.toolCalls.count == 1)
                #expect(call.id == "call_mock_1")
                #expect(call.name == tool.name)
                let arguments = try Self.arguments(call)
                #expect(arguments.jsonText == call.arguments, "arguments are compact JSON")
                let errors = SchemaValidator(root: tool.parameters).errors(arguments, tool.parameters)
                #expect(errors.isEmpty, "\(label) \(tool.name) seed \(seed): \(errors) in \(call.arguments)")
            }
        }
    }

    @Test func theCalledToolIsPickedFromTheWholeList() throws {
        let tools = try Self.loadTools(Self.toolFiles[0].path)
        var used = Set<String>()
        for k in 0..<200 {
            let response = Self.agent().respond(to: ChatRequest(model: "agent", messages: Self.conversation(k), tools: tools))
            let call = try #require(response.message.toolCalls.first)
            used.insert(call.name)
            let tool = try #require(tools.first { $0.name == call.name })
            #expect(SchemaValidator(root: tool.parameters).errors(try Self.arguments(call), tool.parameters).isEmpty)
        }
        #expect(used.count >= 12, "200 conversations reach most of the 16 tools, got \(used.count)")
    }

    @Test func argumentsLookPlausible() throws {
        let tools = try Self.loadTools(Self.toolFiles[0].path)
        let userDetails = try #require(tools.first { $0.name == "get_user_details" })
        let findByEmail = try #require(tools.first { $0.name == "find_user_id_by_email" })
        let address = try #require(tools.first { $0.name == "modify_user_address" })
        for seed in 0..<10 {
            let sampler = SchemaSampler(seed: UInt64(seed))
            let user = try #require(sampler.sample(userDetails.parameters)["user_id"]?.stringValue)
            #expect(user.wholeMatch(of: /user_[0-9]{1,3}/) != nil, "\(user)")
            let email = try #require(sampler.sample(findByEmail.parameters)["email"]?.stringValue)
            #expect(email.wholeMatch(of: /[a-z]+[0-9]+@example\.com/) != nil, "\(email)")
            let a = sampler.sample(address.parameters)
            #expect(a["zip"]?.stringValue?.wholeMatch(of: /[0-9]{5}/) != nil)
            #expect(a["country"] == "USA")
            #expect(a["address1"]?.stringValue?.wholeMatch(of: /[0-9]+ [A-Z][a-z]+ [A-Z][a-z]+/) != nil)
        }
        let dated: JSONValue = .object(["type": "object", "required": .array(["order_date", "created_at", "start_time", "id"]),
                                        "properties": .object(["order_date": .object(["type": "string"]),
                                                               "created_at": .object(["type": "string"]),
                                                               "start_time": .object(["type": "string"]),
                                                               "id": .object(["type": "string"])])])
        for seed in 0..<10 {
            let v = SchemaSampler(seed: UInt64(seed)).sample(dated)
            #expect(v["order_date"]?.stringValue?.wholeMatch(of: /2024-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])/) != nil)
            #expect(v["created_at"]?.stringValue?.wholeMatch(of: /2024-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:00Z/) != nil)
            #expect(v["start_time"]?.stringValue?.wholeMatch(of: /[0-9]{2}:[0-9]{2}/) != nil)
            #expect(v["id"]?.stringValue?.wholeMatch(of: /id_[0-9]+/) != nil)
        }
    }

    /// The shape pydantic (and so τ²) writes for nested models: `$defs`, `$ref`, `anyOf` with
    /// null, `title`, `default`, plus the other keywords the sampler claims to honour.
    static let nestedSchema: JSONValue = {
        let text = #"""
        {"$defs":{
           "Address":{"properties":{"street":{"title":"Street","type":"string"},"zip":{"title":"Zip","type":"string","minLength":5,"maxLength":5}},
                      "required":["street","zip"],"title":"Address","type":"object","additionalProperties":false},
           "Status":{"enum":["pending","shipped","delivered"],"title":"Status","type":"string"},
           "Node":{"type":"object","properties":{"label":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/Node"}},
                   "parent":{"anyOf":[{"$ref":"#/$defs/Node"},{"type":"null"}],"default":null}},"required":["label","children","parent"]}},
         "definitions":{"Money":{"type":"number","exclusiveMinimum":0,"maximum":500,"multipleOf":0.5}},
         "properties":{
           "address":{"$ref":"#/$defs/Address"},
           "billing":{"anyOf":[{"$ref":"#/$defs/Address"},{"type":"null"}],"default":null,"title":"Billing"},
           "status":{"$ref":"#/$defs/Status","default":"pending"},
           "statuses":{"type":"array","items":{"$ref":"#/$defs/Status"},"minItems":2,"maxItems":3,"uniqueItems":true},
           "amount":{"$ref":"#/definitions/Money"},
           "quantity":{"type":"integer","minimum":1,"exclusiveMaximum":4},
           "ratio":{"type":["number","null"],"minimum":0.25,"maximum":0.75},
           "kind":{"const":"refund"},
           "mode":{"oneOf":[{"type":"null"},{"type":"string","enum":["fast","slow"]}]},
           "combined":{"allOf":[{"type":"object","properties":{"a":{"type":"integer","minimum":10}},"required":["a"]},
                                {"properties":{"b":{"type":"boolean"}},"required":["b"]},
                                {"properties":{"a":{"maximum":12}}}]},
           "delivery_date":{"type":"string","format":"date"},
           "updated":{"type":"string","format":"date-time"},
           "token":{"type":"string","format":"uuid"},
           "contact":{"type":"string","format":"email"},
           "tags":{"type":"object","additionalProperties":{"type":"integer","maximum":-3}},
           "limit":{"type":"integer","default":10},
           "tree":{"$ref":"#/$defs/Node"},
           "anything":{}
         },
         "required":["address","billing","status","statuses","amount","quantity","ratio","kind","mode","combined",
                     "delivery_date","updated","token","contact","tags","limit","tree","anything"],
         "title":"parameters","type":"object"}
        """#
        return (try? JSONParser.parse(text)) ?? .null
    }()

    @Test func nestedSchemasWithDefsRefsAndCombinatorsSampleValidly() throws {
        let schema = Self.nestedSchema
        #expect(schema != .null)
        var distinct = Set<String>()
        for seed in 0..<60 {
            let value = SchemaSampler(seed: UInt64(seed)).sample(schema)
            let errors = SchemaValidator(root: schema).errors(value, schema)
            #expect(errors.isEmpty, "seed \(seed): \(errors) in \(value.jsonText)")
            distinct.insert(value.jsonText)
            #expect(value["billing"]?.objectValue != nil, "anyOf takes the first non-null option")
            #expect(value["status"] == "pending", "a default that fits is used")
            #expect(value["limit"] == .number("10"))
            #expect(value["kind"] == "refund")
            #expect(value["mode"]?.stringValue != nil)
            #expect(value["combined"]?["a"]?.doubleValue.map { (10...12).contains($0) } == true)
            #expect(value["token"]?.stringValue?.wholeMatch(of: /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/) != nil)
            #expect(value["tags"]?.objectValue?.count == 1)
            // The recursive tree ends: only required parts below the depth limit, null parents there.
            #expect(Self.depth(value) <= 20)
        }
        #expect(distinct.count == 60)
        #expect(SchemaSampler(seed: 5).sample(schema) == SchemaSampler(seed: 5).sample(schema))
    }

    static func depth(_ v: JSONValue) -> Int {
        switch v {
        case .array(let items): 1 + (items.map(depth).max() ?? 0)
        case .object(let o): 1 + (o.map { depth($0.value) }.max() ?? 0)
        default: 0
        }
    }

    @Test func defaultsThatDoNotFitTheTypeAreIgnored() throws {
        // τ² mock create_task: "description": {"default": null, "type": "string"} — null is not a string.
        let schema: JSONValue = .object(["type": "object", "required": .array(["description", "count"]),
                                         "properties": .object(["description": .object(["type": "string", "default": .null]),
                                                                "count": .object(["type": "integer", "minimum": .number("3"), "default": .number("1")])])])
        for seed in 0..<10 {
            let v = SchemaSampler(seed: UInt64(seed)).sample(schema)
            #expect(v["description"]?.stringValue?.hasPrefix("description ") == true)
            #expect(v["count"]?.doubleValue.map { $0 >= 3 && $0 <= 10 } == true)
        }
    }

    @Test func boundsAreHonoured() throws {
        let cases: [(JSONValue, ClosedRange<Double>)] = [
            (.object(["type": "integer", "minimum": .number("5"), "maximum": .number("7")]), 5...7),
            (.object(["type": "integer", "exclusiveMinimum": .number("5"), "exclusiveMaximum": .number("8")]), 6...7),
            (.object(["type": "integer", "minimum": .number("5"), "exclusiveMinimum": true, "maximum": .number("6")]), 6...6),
            (.object(["type": "integer", "minimum": .number("1000")]), 1000...1099),
            (.object(["type": "integer", "maximum": .number("-50")]), -149 ... -50),
            (.object(["type": "number", "minimum": .number("0.5"), "maximum": .number("0.6")]), 0.5...0.6),
            (.object(["type": "integer", "multipleOf": .number("7"), "minimum": .number("20"), "maximum": .number("40")]), 21...35),
            (.object(["type": "number", "exclusiveMaximum": .number("1")]), -98...0.99),
            (.object(["type": "number", "exclusiveMinimum": .number("100")]), 100.01...199),
        ]
        for (schema, range) in cases {
            for seed in 0..<30 {
                let v = SchemaSampler(seed: UInt64(seed)).sample(schema)
                let x = try #require(v.doubleValue, "\(v)")
                #expect(range.contains(x), "\(schema.jsonText) gave \(x)")
            }
        }
        let strings: JSONValue = .object(["type": "string", "minLength": .number("30"), "maxLength": .number("31")])
        let short: JSONValue = .object(["type": "string", "maxLength": .number("3")])
        for seed in 0..<10 {
            #expect((30...31).contains(SchemaSampler(seed: UInt64(seed)).sample(strings, name: "note").stringValue?.count ?? 0))
            #expect((0...3).contains(SchemaSampler(seed: UInt64(seed)).sample(short, name: "note").stringValue?.count ?? 99))
        }
    }

    @Test func cyclicSchemasEnd() throws {
        let schema = try JSONParser.parse(#"""
            {"$defs":{"A":{"anyOf":[{"$ref":"#/$defs/A"},{"$ref":"#/$defs/A"}]},
                      "B":{"allOf":[{"$ref":"#/$defs/B"},{"$ref":"#/$defs/B"}]},
                      "L":{"type":"object","properties":{"next":{"$ref":"#/$defs/L"}},"required":["next"]}},
             "type":"object","properties":{"a":{"$ref":"#/$defs/A"},"b":{"$ref":"#/$defs/B"},"list":{"$ref":"#/$defs/L"}},
             "required":["a","b","list"]}
            """#)
        let value = SchemaSampler(seed: 1).sample(schema)
        #expect(value["a"]?.stringValue?.hasPrefix("a ") == true)
        #expect(value["b"]?.stringValue?.hasPrefix("b ") == true)
        // L requires itself forever: objects down to level maxDepth + 8 = 14, the last one empty.
        #expect(Self.depth(try #require(value["list"])) == 14)
    }

    @Test func parametersWrittenAsAJSONStringAreRead() throws {
        let tool = ToolSpecification(name: "search", parameters: .string(#"{"type":"object","properties":{"query":{"type":"string"}},"required":["query"]}"#))
        let response = Self.agent().respond(to: ChatRequest(model: "m", messages: Self.conversation(0), tools: [tool]))
        let arguments = try Self.arguments(try #require(response.message.toolCalls.first))
        #expect(arguments["query"]?.stringValue?.hasPrefix("query ") == true)
        #expect(arguments.objectValue?.count == 1)
    }

    @Test func callIdsCountThePreviousToolCalls() throws {
        var messages = Self.conversation(0)
        messages.append(ChatMessage(role: "assistant", content: nil, toolCalls: [ToolCall(id: "call_mock_1", name: "get_member", arguments: "{}"),
                                                                                 ToolCall(id: "call_mock_2", name: "list_loans", arguments: "{}")]))
        messages.append(ChatMessage(role: "tool", content: "{}", toolCallID: "call_mock_1"))
        messages.append(ChatMessage(role: "tool", content: "[]", toolCallID: "call_mock_2"))
        messages.append(ChatMessage(role: "assistant", content: "Done."))
        messages.append(ChatMessage(role: "user", content: "Now renew loan L-501 please."))
        let response = Self.agent().respond(to: ChatRequest(model: "m", messages: messages, tools: Self.libraryTools))
        #expect(response.message.toolCalls.map(\.id) == ["call_mock_3"])
        #expect(response.finishReason == "tool_calls")
    }

    // MARK: Agent text answers

    @Test func afterAToolResultTheAgentAnswersQuotingIt() throws {
        let result = "{\"member_id\": \"M-1001\",   \"name\": \"Ada Byron\",\n\t \"loans\": [\"L-501\", \"L-502\"], \"fines\": 0, \"status\": \"active\"}"
        for seed in 0..<20 {
            var messages = Self.conversation(seed)
            messages.append(ChatMessage(role: "assistant", content: nil, toolCalls: [ToolCall(id: "call_mock_1", name: "get_member", arguments: #"{"member_id":"M-1001"}"#)]))
            // No `name` on the tool message: the tool is found through its tool_call_id.
            messages.append(ChatMessage(role: "tool", content: result, toolCallID: "call_mock_1"))
            let response = Self.agent(seed: seed).respond(to: ChatRequest(model: "m", messages: messages, tools: Self.libraryTools))
            #expect(response.finishReason == "stop")
            #expect(response.message.toolCalls.isEmpty)
            let text = try #require(response.message.content)
            let collapsed = #"{"member_id": "M-1001", "name": "Ada Byron", "loans": ["L-501", "L-502"], "fines": 0, "status": "active"}"#
            let excerpt = String(collapsed.prefix(80)) + "…"
            #expect(MockModel.excerpt(result) == excerpt)
            let closings = ["Is there anything else I can help you with?", "Let me know if you need anything else.",
                            "Would you like me to do anything more?", "Does that answer your question?"]
            #expect(closings.contains { text == "I checked get_member: \"\(excerpt)\". \($0)" }, "\(text)")
        }
        // A short result is quoted whole; the tool message's own name wins.
        var messages = Self.conversation(1)
        messages.append(ChatMessage(role: "assistant", content: nil, toolCalls: [ToolCall(id: "x", name: "list_loans", arguments: "{}")]))
        messages.append(ChatMessage(role: "tool", content: "no loans", toolCallID: "x", name: "list_loans"))
        let text = try #require(Self.agent().respond(to: ChatRequest(model: "m", messages: messages, tools: Self.libraryTools)).message.content)
        #expect(text.hasPrefix("I checked list_loans: \"no loans\". "))
    }

    @Test func toolChoiceNoneNeverCallsATool() throws {
        let tools = try Self.loadTools(Self.toolFiles[0].path)
        let replies = ["I can help with that.", "Let me look into that for you.",
                       "Thanks for the details; here is what I can tell you.", "Understood; I will take care of it."]
        for k in 0..<30 {
            let request = ChatRequest(model: "m", messages: Self.conversation(k), tools: tools, options: ChatOptions(toolChoice: "none"))
            let response = Self.agent(seed: k).respond(to: request)
            #expect(response.message.toolCalls.isEmpty)
            #expect(response.finishReason == "stop")
            let text = try #require(response.message.content)
            #expect(replies.contains { text == "You said: \"Hi, I need help with my order number \(k).\". \($0)" }, "\(text)")
        }
        // No tools offered: the same kind of text answer; no user message at all: a greeting.
        let bare = Self.agent().respond(to: ChatRequest(model: "m", messages: Self.conversation(3)))
        #expect(bare.message.content?.hasPrefix("You said: \"Hi, I need help with my order number 3.\". ") == true)
        let greeting = Self.agent().respond(to: ChatRequest(model: "m", messages: [ChatMessage(role: "system", content: "Be nice.")]))
        #expect(greeting.message.content == "Hello! How can I help you today?")
    }

    @Test func requiredOrNamedToolChoiceAlwaysCalls() throws {
        var messages = Self.conversation(0)
        messages.append(ChatMessage(role: "assistant", content: nil, toolCalls: [ToolCall(id: "call_mock_1", name: "get_member", arguments: "{}")]))
        messages.append(ChatMessage(role: "tool", content: "ok", toolCallID: "call_mock_1"))
        let auto = Self.agent().respond(to: ChatRequest(model: "m", messages: messages, tools: Self.libraryTools))
        #expect(auto.message.toolCalls.isEmpty)
        let required = Self.agent().respond(to: ChatRequest(model: "m", messages: messages, tools: Self.libraryTools,
                                                            options: ChatOptions(toolChoice: "required")))
        #expect(required.message.toolCalls.count == 1)
        #expect(required.message.toolCalls.first?.id == "call_mock_2")
        let named: JSONValue = .object(["type": "function", "function": .object(["name": "renew_loan"])])
        for k in 0..<10 {
            let response = Self.agent().respond(to: ChatRequest(model: "m", messages: Self.conversation(k), tools: Self.libraryTools,
                                                                options: ChatOptions(toolChoice: named)))
            #expect(response.message.toolCalls.map(\.name) == ["renew_loan"])
        }
    }

    // MARK: User simulator

    static let libraryScenario = "You are a user who needs help with: renewing library loans\n\nYour goal: Renew every loan that can still be renewed and learn the new due dates.\n\nInformation you know: Member id M-1001."
    static let followUps = ["Thanks. Could you tell me a bit more about that?", "I see. What is the next step?",
                            "Okay. Can you double-check that for me?", "Got it. Is there anything else I need to do?",
                            "Thanks for explaining. How long will that take?", "Understood. Could you confirm the details once more?"]

    /// Runs the simulator against a canned agent until it writes a stop token; returns its messages.
    static func simulate(_ user: MockModel, opening: String? = nil, conversation k: Int = 0) -> [String] {
        var messages = [ChatMessage(role: "system", content: "# User Simulation Guidelines\nBe realistic.\n\n<scenario>\(libraryScenario)</scenario>")]
        var written: [String] = []
        if let opening {
            messages.append(ChatMessage(role: "assistant", content: opening))
            messages.append(ChatMessage(role: "user", content: "Hello, how can I help? (\(k))"))
        }
        for turn in 0..<50 {
            let text = user.respond(to: ChatRequest(model: "user", messages: messages)).message.content ?? ""
            written.append(text)
            if text.contains("###") { break }
            messages.append(ChatMessage(role: "assistant", content: text))
            messages.append(ChatMessage(role: "user", content: "Agent reply \(turn) in conversation \(k)."))
        }
        return written
    }

    @Test(arguments: [0, 1, 2, 3, 5])
    func userSimulatorAsksUserTurnsMinusOneFollowUpsThenStops(userTurns: Int) throws {
        for seed in 0..<5 {
            let user = MockModel(role: .user, settings: .init(seed: seed, userTurns: userTurns))
            let written = Self.simulate(user, conversation: seed)
            #expect(written.last == MockModel.stopClosing)
            if userTurns == 0 {
                #expect(written == [MockModel.stopClosing])
                continue
            }
            #expect(written.count == userTurns + 1)
            #expect(written.first == "Hi, I need some help. Renew every loan that can still be renewed and learn the new due dates.")
            let middle = written.dropFirst().dropLast()
            #expect(middle.count == userTurns - 1)
            #expect(middle.allSatisfy { Self.followUps.contains($0) && $0.hasSuffix("?") })
            // When the dataset supplies the opening, the simulator starts with the follow-ups.
            let afterOpening = Self.simulate(user, opening: "Hi, can you renew my books?", conversation: seed)
            #expect(afterOpening.count == userTurns)
            #expect(afterOpening.dropLast().allSatisfy { Self.followUps.contains($0) })
            #expect(afterOpening.last == MockModel.stopClosing)
        }
    }

    @Test func followUpWordingVariesBySeedAndTurn() throws {
        var seen = Set<String>()
        for seed in 0..<20 {
            let written = Self.simulate(MockModel(role: .user, settings: .init(seed: seed, userTurns: 4)), conversation: 0)
            seen.formUnion(written.dropFirst().dropLast())
        }
        #expect(seen.count >= 4)
    }

    @Test func transferAndOutOfScopeRates() throws {
        let transfer = MockModel(role: .user, settings: .init(userTurns: 2, transferRate: 1))
        #expect(Self.simulate(transfer).last == MockModel.transferClosing)
        #expect(MockModel.transferClosing.hasSuffix("###TRANSFER###"))
        let outOfScope = MockModel(role: .user, settings: .init(userTurns: 1, outOfScopeRate: 1))
        #expect(Self.simulate(outOfScope).last == MockModel.outOfScopeClosing)
        #expect(MockModel.outOfScopeClosing.hasSuffix("###OUT-OF-SCOPE###"))
        #expect(MockModel.stopClosing.hasSuffix("###STOP###"))
        let half = MockModel(role: .user, settings: .init(userTurns: 1, transferRate: 0.5))
        var transfers = 0
        for k in 0..<200 {
            let end = try #require(Self.simulate(half, opening: "Hi", conversation: k).last)
            #expect(end == MockModel.transferClosing || end == MockModel.stopClosing)
            if end == MockModel.transferClosing { transfers += 1 }
        }
        #expect((70...130).contains(transfers), "\(transfers) of 200")
    }

    @Test func openingComesFromTheScenario() {
        #expect(MockModel.opening(fromSystemPrompt: Self.libraryScenario)
            == "Hi, I need some help. Renew every loan that can still be renewed and learn the new due dates.")
        // τ²'s layout: a label on its own line, the text below it.
        let tau2 = "Guidelines.\n<scenario>\nPersona: a busy parent\nInstructions:\n\tDomain: retail\n\tReason for call:\n\t\tYou want to return a lamp you bought last week.\n</scenario>"
        #expect(MockModel.opening(fromSystemPrompt: tau2) == "Hi, I need some help. You want to return a lamp you bought last week.")
        #expect(MockModel.opening(fromSystemPrompt: "# Heading\n\nI lost my transit card.") == "Hi, I need some help. I lost my transit card.")
        #expect(MockModel.opening(fromSystemPrompt: "") == "Hi, I need some help, please.")
        let user = MockModel(role: .user)
        #expect(user.respond(to: ChatRequest(model: "u", messages: [])).message.content == "Hi, I need some help, please.")
    }

    // MARK: Judge

    static func judgeRequest(_ k: Int) -> ChatRequest {
        ChatRequest(model: "judge", messages: [
            ChatMessage(role: "system", content: "Judge whether the response matches the reference answer."),
            ChatMessage(role: "user", content: "Question \(k): what is \(k) + 1?\nReference: \(k + 1)\nResponse: \(k % 3 == 0 ? k + 1 : k)"),
        ])
    }

    @Test(arguments: MockModel.JudgeFormat.allCases)
    func judgeRepliesParseAsTheirFormatAndPassNearTheRate(format: MockModel.JudgeFormat) throws {
        let judge = MockModel(role: .judge, settings: .init(judgeFormat: format, judgePassRate: 0.5))
        var passes = 0
        var verdicts = Set<String>()
        for k in 0..<200 {
            let response = judge.respond(to: Self.judgeRequest(k))
            #expect(response.finishReason == "stop")
            let text = try #require(response.message.content)
            verdicts.insert(text)
            #expect(judge.respond(to: Self.judgeRequest(k)).message.content == text)
            let pass: Bool
            switch format {
            case .correctIncorrect:
                #expect(text == "Correct" || text == "Incorrect")
                pass = text == "Correct"
            case .abc:
                #expect(["A", "B", "C"].contains(text))
                pass = text == "A"
            case .yesNo:
                #expect(text.wholeMatch(of: /correct: (yes|no)/) != nil)
                pass = text == "correct: yes"
            case .json:
                let value = try JSONParser.parse(text)
                #expect(value.objectValue?.keys == ["correct"])
                let verdict: Bool? = value["correct"]?.boolValue
                #expect(verdict != nil)
                pass = verdict == true
            }
            if pass { passes += 1 }
        }
        #expect((70...130).contains(passes), "\(passes) of 200 passed")
        #expect(verdicts.count == (format == .abc ? 3 : 2))
    }

    @Test(arguments: [(0.0, 0...0), (0.2, 20...60), (0.8, 140...180), (1.0, 200...200)])
    func judgePassRateIsFollowed(rate: Double, expected: ClosedRange<Int>) {
        let judge = MockModel(role: .judge, settings: .init(judgePassRate: rate))
        let passes = (0..<200).filter { judge.respond(to: Self.judgeRequest($0)).message.content == "Correct" }.count
        #expect(expected.contains(passes), "rate \(rate): \(passes) of 200")
    }

    // MARK: Usage, ids, reasoning

    @Test func usageCountsBytesOverFour() throws {
        let request = ChatRequest(model: "tiny", messages: [ChatMessage(role: "user", content: "Hi")])
        let response = Self.agent().respond(to: request)
        // [{"role":"user","content":"Hi"}] is 32 bytes.
        #expect(response.usage.promptTokens == 8)
        let content = try #require(response.message.content)
        #expect(response.usage.completionTokens == (content.utf8.count + 3) / 4)
        #expect(response.usage.reasoningTokens == nil)
        #expect(response.model == "tiny")
        #expect(response.id?.wholeMatch(of: /mock-[0-9a-f]{16}/) != nil)

        // Tools add to the prompt; a tool call's name and arguments are the completion.
        let withTools = Self.agent().respond(to: ChatRequest(model: "m", messages: request.messages, tools: Self.libraryTools))
        let call = try #require(withTools.message.toolCalls.first)
        let toolBytes = Self.libraryTools.reduce(0) { $0 + $1.name.utf8.count + ($1.description?.utf8.count ?? 0) + $1.parameters.jsonText.utf8.count }
        #expect(withTools.usage.promptTokens == (32 + toolBytes + 3) / 4)
        #expect(withTools.usage.completionTokens == (call.name.utf8.count + call.arguments.utf8.count + 3) / 4)

        // Every role reports at least one token each way.
        for role in MockModel.Role.allCases {
            let r = MockModel(role: role).respond(to: ChatRequest(model: "m", messages: []))
            #expect((r.usage.promptTokens ?? 0) >= 1)
            #expect((r.usage.completionTokens ?? 0) >= 1)
        }
    }

    @Test func reasoningIsEmittedWhenAskedFor() throws {
        let request = ChatRequest(model: "m", messages: Self.conversation(0), tools: Self.libraryTools)
        let response = Self.agent(reasoning: true).respond(to: request)
        let call = try #require(response.message.toolCalls.first)
        let reasoning = try #require(response.message.reasoningContent)
        #expect(reasoning == "To help with this request I will call \(call.name) first.")
        #expect(response.usage.reasoningTokens == (reasoning.utf8.count + 3) / 4)
        #expect(response.usage.completionTokens == (reasoning.utf8.count + call.name.utf8.count + call.arguments.utf8.count + 3) / 4)
        // Thinking turned on in the request has the same effect; otherwise none.
        var options = ChatOptions()
        options.thinking = .init(enabled: true)
        let thinking = Self.agent().respond(to: ChatRequest(model: "m", messages: Self.conversation(0), options: options))
        #expect(thinking.message.reasoningContent == "I can answer the user directly.")
        #expect(Self.agent().respond(to: request).message.reasoningContent == nil)
    }

    // MARK: Settings

    @Test func settingsAreReadFromTheRegistryEntry() throws {
        let settings = try MockModel.Settings(["seed": .number("42"), "user_turns": .number("5"), "transfer_rate": .number("0.25"),
                                               "judgeFormat": "yes_no", "judge_pass_rate": .number("0.9"), "reasoning": true,
                                               "unrelated": "ignored"])
        #expect(settings == MockModel.Settings(seed: 42, userTurns: 5, transferRate: 0.25, judgeFormat: .yesNo, judgePassRate: 0.9, reasoning: true))
        #expect(try MockModel.Settings([:]) == MockModel.Settings())
        #expect(MockModel.Settings() == MockModel.Settings(seed: 0, userTurns: 3, transferRate: 0, outOfScopeRate: 0,
                                                           judgeFormat: .correctIncorrect, judgePassRate: 0.5, reasoning: false))

        let bad: [(JSONObject, String)] = [
            (["transfer_rate": .number("1.5")], "transfer_rate"),
            (["judge_format": "letters"], "judge_format"),
            (["user_turns": .number("2.5")], "user_turns"),
            (["user_turns": .number("-1")], "user_turns"),
            (["reasoning": .number("1")], "reasoning"),
            (["transfer_rate": .number("0.7"), "out_of_scope_rate": .number("0.7")], "out_of_scope_rate"),
        ]
        for (object, key) in bad {
            #expect(throws: MockModelError.self) { try MockModel.Settings(object) }
            do throws(MockModelError) { _ = try MockModel.Settings(object) } catch { #expect(error.key == key) }
        }
        #expect(throws: MockModelError.self) { try MockModel(mode: "chat_template_kwargs", settings: [:]) }
        #expect(try MockModel(mode: nil, settings: [:]).role == .agent)
    }

    @Test func theShippedRegistryMockEntriesLoad() throws {
        let registry = try ModelRegistry.load(file: Fixture.repoRoot.appending(path: "configs/models.yml").path)
        let roles = try ["mock/agent", "mock/user", "mock/judge"].map { name in
            try MockModel(entry: try #require(registry.entry(named: name))).role
        }
        #expect(roles == [.agent, .user, .judge])
    }
}

// MARK: - A small JSON Schema validator for the subset the tool lists use

/// Checks type, const, enum, required, properties, additionalProperties, items, uniqueItems,
/// min/maxItems, min/maxLength, minimum/maximum (and the exclusive forms), multipleOf, format
/// (date, date-time, email, uuid), $ref into the root ($defs/definitions), anyOf, oneOf, allOf.
struct SchemaValidator {
    let root: JSONValue

    func errors(_ value: JSONValue, _ schema: JSONValue, at path: String = "$", hops: Int = 0) -> [String] {
        guard hops < 64 else { return ["\(path): $ref loop"] }
        switch schema {
        case .bool(let ok): return ok ? [] : ["\(path): false schema"]
        case .object(let s): return check(value, s, path, hops)
        default: return ["\(path): schema is not an object"]
        }
    }

    private func resolve(_ ref: String) -> JSONValue? {
        guard ref.hasPrefix("#") else { return nil }
        var node = root
        for token in ref.dropFirst().split(separator: "/") {
            guard let next = node[String(token)] else { return nil }
            node = next
        }
        return node
    }

    private static func isInteger(_ v: JSONValue) -> Bool {
        guard case .number(let n) = v, let d = Double(n) else { return false }
        return d == d.rounded()
    }

    private static func matches(_ v: JSONValue, _ type: String) -> Bool {
        switch (type, v) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("number", .number): true
        case ("integer", _): isInteger(v)
        default: false
        }
    }

    private func check(_ v: JSONValue, _ s: JSONObject, _ path: String, _ hops: Int) -> [String] {
        var out: [String] = []
        if let ref = s["$ref"]?.stringValue {
            if let target = resolve(ref) { out += errors(v, target, at: path, hops: hops + 1) } else { out.append("\(path): unresolved \(ref)") }
        }
        if let t = s["type"] {
            let names = t.stringValue.map { [$0] } ?? t.arrayValue?.compactMap(\.stringValue) ?? []
            if !names.contains(where: { Self.matches(v, $0) }) { out.append("\(path): \(v.typeName) is not \(names)") }
        }
        if let c = s["const"], c != v { out.append("\(path): not the const \(c.jsonText)") }
        if let e = s["enum"]?.arrayValue, !e.contains(v) { out.append("\(path): \(v.jsonText) not in enum") }
        if let any = s["anyOf"]?.arrayValue, !any.contains(where: { errors(v, $0, at: path, hops: hops + 1).isEmpty }) {
            out.append("\(path): matches no anyOf option")
        }
        if let one = s["oneOf"]?.arrayValue {
            let n = one.filter { errors(v, $0, at: path, hops: hops + 1).isEmpty }.count
            if n != 1 { out.append("\(path): matches \(n) oneOf options") }
        }
        for part in s["allOf"]?.arrayValue ?? [] { out += errors(v, part, at: path, hops: hops + 1) }
        switch v {
        case .string(let text):
            if let lo = s["minLength"]?.doubleValue, Double(text.count) < lo { out.append("\(path): shorter than \(lo)") }
            if let hi = s["maxLength"]?.doubleValue, Double(text.count) > hi { out.append("\(path): longer than \(hi)") }
            switch s["format"]?.stringValue {
            case "date"?: if text.wholeMatch(of: /[0-9]{4}-[0-9]{2}-[0-9]{2}/) == nil { out.append("\(path): not a date") }
            case "date-time"?: if text.wholeMatch(of: /[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})/) == nil { out.append("\(path): not a date-time") }
            case "email"?: if text.wholeMatch(of: /[^@\s]+@[^@\s]+\.[a-z]+/) == nil { out.append("\(path): not an email") }
            case "uuid"?: if text.wholeMatch(of: /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/) == nil { out.append("\(path): not a uuid") }
            default: break
            }
        case .number(let literal):
            let x = Double(literal) ?? .nan
            let minimum = s["minimum"]?.doubleValue, maximum = s["maximum"]?.doubleValue
            if let lo = minimum { if s["exclusiveMinimum"] == true ? x <= lo : x < lo { out.append("\(path): \(x) below minimum \(lo)") } }
            if let hi = maximum { if s["exclusiveMaximum"] == true ? x >= hi : x > hi { out.append("\(path): \(x) above maximum \(hi)") } }
            if let lo = s["exclusiveMinimum"]?.doubleValue, x <= lo { out.append("\(path): \(x) not above \(lo)") }
            if let hi = s["exclusiveMaximum"]?.doubleValue, x >= hi { out.append("\(path): \(x) not below \(hi)") }
            if let m = s["multipleOf"]?.doubleValue {
                let q = x / m
                if abs(q - q.rounded()) > 1e-9 { out.append("\(path): \(x) not a multiple of \(m)") }
            }
        case .array(let items):
            if let lo = s["minItems"]?.doubleValue, Double(items.count) < lo { out.append("\(path): fewer than \(lo) items") }
            if let hi = s["maxItems"]?.doubleValue, Double(items.count) > hi { out.append("\(path): more than \(hi) items") }
            if s["uniqueItems"] == true, Set(items.map(\.jsonText)).count != items.count { out.append("\(path): items not unique") }
            if let itemSchema = s["items"] {
                for (i, item) in items.enumerated() { out += errors(item, itemSchema, at: "\(path)[\(i)]", hops: hops) }
            }
        case .object(let o):
            for key in s["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where o[key] == nil {
                out.append("\(path): missing required \(key)")
            }
            let props = s["properties"]?.objectValue ?? JSONObject()
            for (key, item) in o {
                if let sub = props[key] {
                    out += errors(item, sub, at: "\(path).\(key)", hops: hops)
                } else if let extra = s["additionalProperties"] {
                    out += errors(item, extra, at: "\(path).\(key)", hops: hops)
                }
            }
        default:
            break
        }
        return out
    }
}
