import Cluster
import Testing

/// The rules of the mesh core one at a time (cluster-design §3.4-§3.9), LAN profile: heartbeat 200 ms, E = 1.5 s.
@Suite struct MeshCoreTests {
    static let e: UInt64 = MeshSettings.lanElectionTimeoutMs

    static func core(_ id: NodeID = "n1", peers: [NodeID] = ["n2", "n3"], durable: MeshCore.Durable = .initial,
                     witness: Bool = false, upstreamDuty: Bool = true, votesRemembered: Bool = true) -> MeshCore {
        MeshCore(settings: MeshSettings(nodeId: id, peers: peers, isWitness: witness,
                                        heartbeatMs: MeshSettings.lanHeartbeatMs,
                                        electionTimeoutMs: MeshSettings.lanElectionTimeoutMs, upstreamDuty: upstreamDuty),
                 durable: durable, now: 0, seed: 42, incarnation: 1, votesRemembered: votesRemembered)
    }

    static func state(term: UInt64, role: MeshRole, leader: NodeID?, applied: MeshPosition = .zero,
                      reachable: Bool = true, voters: [NodeID] = ["n1", "n2", "n3"]) -> MeshMessage {
        .state(PeerStateMessage(term: term, role: role, leaderId: leader, applied: applied, fullEpoch: .zero,
                                data: DataSummary(dataVersion: 1, digest: "d", hasData: true),
                                upstreamState: role == .leader ? .stable : .none, upstreamReachable: reachable,
                                voters: voters, incarnation: 7, storageHealthy: true))
    }

    /// Ticks until the core sends pre-votes; returns the time it did.
    static func tickUntilPreVote(_ core: inout MeshCore, from start: UInt64) -> UInt64 {
        var now = start
        while now < start + 10 * e {
            now += 10
            if core.tick(now: now).contains(where: { if case .send(.preVote, _) = $0 { return true } else { return false } }) {
                return now
            }
        }
        Issue.record("no pre-vote within 10 E")
        return now
    }

    /// Makes `core` (n1) the leader of term 1 with n2's votes.
    static func leader(_ core: inout MeshCore) -> UInt64 {
        let now = tickUntilPreVote(&core, from: 0)
        _ = core.receive(.preVoteResponse(VoteResponse(term: 1, granted: true)), from: "n2", now: now + 1)
        #expect(core.role == .candidate)
        let actions = core.receive(.voteResponse(VoteResponse(term: 1, granted: true)), from: "n2", now: now + 2)
        #expect(core.role == .leader)
        #expect(actions.contains(.startUpstream(term: 1, forceFull: false)))
        return now + 2
    }

    static func granted(_ actions: [MeshAction], vote: Bool) -> Bool? {
        for action in actions {
            if case .send(.voteResponse(let r), _) = action, vote { return r.granted }
            if case .send(.preVoteResponse(let r), _) = action, !vote { return r.granted }
        }
        return nil
    }

    @Test func neverCampaignsInTheFirstElectionTimeout() {
        var core = Self.core()
        for now in stride(from: UInt64(10), to: Self.e, by: 10) {
            #expect(!core.tick(now: now).contains { if case .send(.preVote, _) = $0 { return true } else { return false } })
        }
        let at = Self.tickUntilPreVote(&core, from: Self.e)
        #expect(at >= Self.e + 50 && at < 2 * Self.e + 10)
    }

    @Test func preVoteChangesNothingAndVoteIsDurableBeforeItIsGranted() {
        var core = Self.core(durable: .init(term: 3, votedFor: nil, applied: .zero, fullEpoch: .zero))
        let pre = core.receive(.preVote(VoteRequest(term: 4, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 10)
        #expect(Self.granted(pre, vote: false) == true)
        #expect(core.term == 3 && core.votedFor == nil)
        #expect(!pre.contains { if case .persistTermVote = $0 { return true } else { return false } })

        let vote = core.receive(.vote(VoteRequest(term: 4, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 20)
        let persistIndex = vote.firstIndex(of: .persistTermVote(term: 4, votedFor: "n2"))
        let grantIndex = vote.firstIndex(of: .send(.voteResponse(VoteResponse(term: 4, granted: true)), to: "n2"))
        #expect(persistIndex != nil && grantIndex != nil && persistIndex! < grantIndex!)
        // One vote per term.
        let other = core.receive(.vote(VoteRequest(term: 4, voters: ["n1", "n2", "n3"], transfer: false)), from: "n3", now: 30)
        #expect(Self.granted(other, vote: true) == false)
    }

    @Test func aStalePreVoteIsRefusedWithTheHigherTerm() {
        var core = Self.core(durable: .init(term: 5, votedFor: nil, applied: .zero, fullEpoch: .zero))
        let actions = core.receive(.preVote(VoteRequest(term: 3, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 10)
        #expect(actions == [.send(.preVoteResponse(VoteResponse(term: 5, granted: false, reason: "stale term")), to: "n2")])
    }

    @Test func aHeardLeaderIsNotDisruptedExceptByATransfer() {
        var core = Self.core(durable: .init(term: 2, votedFor: nil, applied: .zero, fullEpoch: .zero))
        _ = core.receive(Self.state(term: 2, role: .leader, leader: "n2"), from: "n2", now: 100)
        #expect(core.leaderId == "n2")
        let pre = core.receive(.preVote(VoteRequest(term: 3, voters: ["n1", "n2", "n3"], transfer: false)), from: "n3", now: 200)
        #expect(Self.granted(pre, vote: false) == false)
        let vote = core.receive(.vote(VoteRequest(term: 3, voters: ["n1", "n2", "n3"], transfer: false)), from: "n3", now: 210)
        #expect(Self.granted(vote, vote: true) == false)
        #expect(core.term == 2, "a refused vote request does not raise the term")
        let transfer = core.receive(.vote(VoteRequest(term: 3, voters: ["n1", "n2", "n3"], transfer: true)), from: "n3", now: 220)
        #expect(Self.granted(transfer, vote: true) == true)
        #expect(core.term == 3)
        // Once the leader has been silent for E, a pre-vote is granted.
        var quiet = Self.core(durable: .init(term: 2, votedFor: nil, applied: .zero, fullEpoch: .zero))
        _ = quiet.receive(Self.state(term: 2, role: .leader, leader: "n2"), from: "n2", now: 100)
        let later = quiet.receive(.preVote(VoteRequest(term: 3, voters: ["n1", "n2", "n3"], transfer: false)), from: "n3",
                                  now: 100 + Self.e)
        #expect(Self.granted(later, vote: false) == true)
    }

    @Test func checkQuorumStepsDownClosingTheUpstreamFirst() {
        var core = Self.core()
        var now = Self.leader(&core)
        // n2 confirms once, then everyone goes silent.
        let confirmed = now + 100
        _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1"), from: "n2", now: confirmed)
        var stepDown: [MeshAction] = []
        while core.role == .leader, now < 10 * Self.e {
            now += 50
            stepDown = core.tick(now: now)
        }
        #expect(core.role == .follower)
        #expect(stepDown.first == .stopUpstream)
        #expect(now >= confirmed + Self.e && now <= confirmed + Self.e + 50, "stepped down \(now - confirmed) ms after the last confirmation")
    }

    @Test func aPausedLeaderStepsDownBeforeHandlingAnything() {
        var core = Self.core()
        let now = Self.leader(&core)
        let actions = core.receive(Self.state(term: 1, role: .follower, leader: "n1"), from: "n2", now: now + 3 * Self.e)
        #expect(actions.first == .stopUpstream)
        #expect(core.role == .follower)
    }

    @Test func aClosedLeaderConnectionStartsAPreVoteWithinAQuarterOfE() {
        var core = Self.core(durable: .init(term: 2, votedFor: nil, applied: .zero, fullEpoch: .zero))
        _ = core.receive(Self.state(term: 2, role: .leader, leader: "n2"), from: "n2", now: 1_000)
        _ = core.peerDisconnected("n2", now: 1_010)
        #expect(core.leaderId == nil)
        let at = Self.tickUntilPreVote(&core, from: 1_010)
        #expect(at <= 1_010 + Self.e / 4 + 10)
        // The other follower lost the leader too: it grants.
        var other = Self.core("n3", peers: ["n1", "n2"], durable: .init(term: 2, votedFor: nil, applied: .zero, fullEpoch: .zero))
        _ = other.receive(Self.state(term: 2, role: .leader, leader: "n2"), from: "n2", now: 1_000)
        _ = other.peerDisconnected("n2", now: 1_005)
        let pre = other.receive(.preVote(VoteRequest(term: 3, voters: ["n1", "n2", "n3"], transfer: false)), from: "n1", now: at + 2)
        #expect(Self.granted(pre, vote: false) == true)
    }

    @Test func replicationIsFencedByTermAndSequenceAndAcknowledgedOnlyWhenDurable() {
        var core = Self.core(durable: .init(term: 3, votedFor: nil, applied: MeshPosition(term: 3, seq: 4), fullEpoch: .zero))
        _ = core.receive(Self.state(term: 3, role: .leader, leader: "n2", applied: MeshPosition(term: 3, seq: 4)), from: "n2", now: 10)
        // A deposed leader's patch (term 2) is dropped.
        let old = ReplicationMessage(position: MeshPosition(term: 2, seq: 9), prevSeq: 8, fullEpoch: .zero, catchup: false, payload: [])
        #expect(core.receive(.patch(old), from: "n3", now: 20).isEmpty)
        // In sequence: applied.
        let next = ReplicationMessage(position: MeshPosition(term: 3, seq: 5), prevSeq: 4, fullEpoch: .zero, catchup: false, payload: [1])
        #expect(core.receive(.patch(next), from: "n2", now: 30) == [.applyReplicated(next, isSnapshot: false, from: "n2")])
        // Not durable: no ACK; durable: ACK with the position.
        #expect(core.replicatedApplied(next, durable: false, data: .empty, now: 40).isEmpty)
        let gap = ReplicationMessage(position: MeshPosition(term: 3, seq: 7), prevSeq: 6, fullEpoch: .zero, catchup: false, payload: [])
        let gapActions = core.receive(.patch(gap), from: "n2", now: 50)
        #expect(gapActions.contains { if case .requestCatchup(to: "n2", term: 3, _, _) = $0 { return true } else { return false } })
        var fresh = Self.core(durable: .init(term: 3, votedFor: nil, applied: MeshPosition(term: 3, seq: 4), fullEpoch: .zero))
        _ = fresh.receive(.patch(next), from: "n2", now: 30)
        #expect(fresh.replicatedApplied(next, durable: true, data: .empty, now: 40)
                == [.send(.ack(AckMessage(term: 3, applied: MeshPosition(term: 3, seq: 5))), to: "n2")])
    }

    @Test func aLeaderStampsChangesAndAnswersCatchups() {
        var core = Self.core()
        let now = Self.leader(&core)
        _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1"), from: "n2", now: now + 1)
        let position = core.beginLocalChange()
        #expect(position == MeshPosition(term: 1, seq: 1))
        let actions = core.endLocalChange(at: position!, isFull: false, changed: true, durable: true,
                                          data: DataSummary(dataVersion: 5, digest: "x", hasData: true), now: now + 2)
        #expect(actions == [.replicate(ReplicationPlan(position: position!, prevSeq: 0, fullEpoch: .zero, isFull: false,
                                                       followers: ["n2", "n3"]))])
        // A duplicate change uses no sequence number.
        let dup = core.beginLocalChange()!
        #expect(core.endLocalChange(at: dup, isFull: false, changed: false, durable: true,
                                    data: DataSummary(dataVersion: 5, digest: "x", hasData: true), now: now + 3).isEmpty)
        #expect(core.beginLocalChange() == MeshPosition(term: 1, seq: 2))
        _ = core.endLocalChange(at: MeshPosition(term: 1, seq: 2), isFull: false, changed: false, durable: true,
                                data: DataSummary(dataVersion: 5, digest: "x", hasData: true), now: now + 3)
        // A follower without data gets a snapshot; one with data, the items newer than its versions.
        let empty = CatchupRequest(term: 1, applied: .zero, fullEpoch: .zero, data: .empty, envs: [])
        #expect(core.receive(.catchup(empty), from: "n3", now: now + 4)
                == [.answerCatchup(CatchupAnswer(follower: "n3", kind: .snapshot, position: MeshPosition(term: 1, seq: 1), fullEpoch: .zero))])
        let envs = [EnvironmentVersion(envId: "e", timestamp: 3)]
        let behind = CatchupRequest(term: 1, applied: .zero, fullEpoch: .zero,
                                    data: DataSummary(dataVersion: 3, digest: "y", hasData: true), envs: envs)
        #expect(core.receive(.catchup(behind), from: "n3", now: now + 5)
                == [.answerCatchup(CatchupAnswer(follower: "n3", kind: .patch(since: envs), position: MeshPosition(term: 1, seq: 1), fullEpoch: .zero))])
        // A second catch-up while the snapshot is on its way gets nothing; once the follower reports the snapshot's
        // position, or after snapshotResendMs, it would get another.
        #expect(core.receive(.catchup(empty), from: "n3", now: now + 6).isEmpty, "no second snapshot while one is in flight")
        _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1", applied: MeshPosition(term: 1, seq: 1)), from: "n3", now: now + 7)
        #expect(core.receive(.catchup(empty), from: "n3", now: now + 8).count == 1, "confirmed: a new snapshot may go")
        #expect(core.receive(.catchup(empty), from: "n3", now: now + 9).isEmpty)
        var later = now + 10
        while later < now + 9 + core.settings.snapshotResendMs {
            later += 500
            _ = core.tick(now: later)
            _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1"), from: "n2", now: later)
        }
        #expect(core.isLeader)
        #expect(core.receive(.catchup(empty), from: "n3", now: later).count == 1, "not confirmed in time: sent again")
        // A non-leader stamps nothing.
        var follower = Self.core("n2", peers: ["n1", "n3"])
        #expect(follower.beginLocalChange() == nil)
    }

    @Test func leavingHandsLeadershipToACaughtUpFollower() {
        var core = Self.core()
        let now = Self.leader(&core)
        _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1", applied: MeshPosition(term: 1, seq: 0)), from: "n2", now: now + 1)
        _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1", applied: .zero, reachable: false), from: "n3", now: now + 1)
        let actions = core.beginLeave(now: now + 2)
        #expect(actions.first == .send(.timeoutNow(term: 1), to: "n2"))
        #expect(actions.contains(.stopUpstream))
        #expect(actions.contains(.send(.leave(term: 1), to: "n3")))
        #expect(actions.last == .leaveComplete)
        // The target campaigns at once with the transfer flag.
        var target = Self.core("n2", peers: ["n1", "n3"])
        _ = target.receive(Self.state(term: 1, role: .leader, leader: "n1"), from: "n1", now: 10)
        let campaign = target.receive(.timeoutNow(term: 1), from: "n1", now: 20)
        #expect(target.role == .candidate && target.term == 2)
        #expect(campaign.contains(.send(.vote(VoteRequest(term: 2, voters: ["n1", "n2", "n3"], transfer: true)), to: "n3")))
    }

    @Test func aLeaderWithoutUpstreamHandsOverToOneThatReachesIt() {
        var core = Self.core()
        var now = Self.leader(&core)
        let lost = now
        _ = core.upstreamChanged(.interrupted, now: now)
        var transferAt: UInt64?
        while transferAt == nil, now < 60_000 {
            now += 100
            _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1", applied: MeshPosition(term: 1, seq: 0)), from: "n2", now: now)
            _ = core.receive(Self.state(term: 1, role: .follower, leader: "n1", applied: MeshPosition(term: 1, seq: 0), reachable: false),
                             from: "n3", now: now)
            if core.tick(now: now).contains(.send(.timeoutNow(term: 1), to: "n2")) { transferAt = now }
        }
        #expect(transferAt != nil && transferAt! - lost >= 30_000 && transferAt! - lost < 30_200,
                "transferred \(transferAt.map { $0 - lost } ?? 0) ms after the upstream was lost")
    }

    @Test func peerListsThatDifferByMoreThanOneNodeGetNoVotes() {
        var core = Self.core()
        let fiveNodes = VoteRequest(term: 1, voters: ["n1", "n2", "n3", "n4", "n5"], transfer: false)
        let refused = core.receive(.preVote(fiveNodes), from: "n2", now: 10)
        #expect(refused.first == .unsafePeerList(peer: "n2", theirs: fiveNodes.voters))
        #expect(Self.granted(refused, vote: false) == false)
        let fourNodes = VoteRequest(term: 1, voters: ["n1", "n2", "n3", "n4"], transfer: false)
        #expect(Self.granted(core.receive(.preVote(fourNodes), from: "n2", now: 20), vote: false) == true)
    }

    @Test func aWitnessVotesButNeverCampaigns() {
        var witness = Self.core("n3", peers: ["n1", "n2"], witness: true)
        #expect(witness.role == .witness)
        for now in stride(from: UInt64(10), to: 10 * Self.e, by: 10) {
            #expect(!witness.tick(now: now).contains { if case .send(.preVote, _) = $0 { return true } else { return false } })
        }
        let vote = witness.receive(.vote(VoteRequest(term: 1, voters: ["n1", "n2", "n3"], transfer: false)), from: "n1", now: 10 * Self.e)
        #expect(Self.granted(vote, vote: true) == true)
    }

    @Test func aNodeWithoutItsVoteRecordVotesOnlyAfterHearingEveryPeer() {
        var core = Self.core(votesRemembered: false)
        _ = core.receive(Self.state(term: 4, role: .follower, leader: nil), from: "n2", now: 10)
        let early = core.receive(.vote(VoteRequest(term: 5, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 20)
        #expect(Self.granted(early, vote: true) == false)
        _ = core.receive(Self.state(term: 6, role: .follower, leader: nil), from: "n3", now: 30)
        // It heard term 6: it may have voted in any term up to 6.
        let atSix = core.receive(.vote(VoteRequest(term: 6, voters: ["n1", "n2", "n3"], transfer: false)), from: "n3", now: 40)
        #expect(Self.granted(atSix, vote: true) == false)
        let atSeven = core.receive(.vote(VoteRequest(term: 7, voters: ["n1", "n2", "n3"], transfer: false)), from: "n3", now: 50)
        #expect(Self.granted(atSeven, vote: true) == true)
    }

    @Test func amnesiaSurvivesARestartAndHasNoNewMeshShortcut() {
        // Adopting a term while amnesiac writes the amnesia with it.
        var core = Self.core(votesRemembered: false)
        let adopted = core.receive(Self.state(term: 3, role: .follower, leader: nil), from: "n2", now: 10)
        #expect(adopted.contains(.persistTermVote(term: 3, votedFor: MeshCore.amnesiacVote)))
        // Restarted from that record: still amnesiac, even though the record exists.
        var restarted = Self.core(durable: .init(term: 3, votedFor: MeshCore.amnesiacVote, applied: .zero, fullEpoch: .zero))
        _ = restarted.receive(Self.state(term: 3, role: .follower, leader: nil), from: "n2", now: 10)
        let vote = restarted.receive(.vote(VoteRequest(term: 4, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 20)
        #expect(Self.granted(vote, vote: true) == false)
        // Every peer at term 0 for a long time: still no vote until each one was heard (it cannot know what the
        // unheard one saw).
        var fresh = Self.core(votesRemembered: false)
        _ = fresh.receive(Self.state(term: 0, role: .follower, leader: nil), from: "n2", now: 10)
        for now in stride(from: UInt64(100), to: 10 * Self.e, by: 100) {
            #expect(!fresh.tick(now: now).contains { if case .send(.preVote, _) = $0 { return true } else { return false } })
        }
        let early = fresh.receive(.vote(VoteRequest(term: 1, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 10 * Self.e)
        #expect(Self.granted(early, vote: true) == false)
        // Once n3 is heard too, the floor (term 0 here) is written and later terms get votes.
        let cleared = fresh.receive(Self.state(term: 0, role: .follower, leader: nil), from: "n3", now: 10 * Self.e + 10)
        #expect(cleared.contains(.persistTermVote(term: 0, votedFor: MeshCore.unknownVote)))
        let later = fresh.receive(.vote(VoteRequest(term: 1, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 10 * Self.e + 30)
        #expect(Self.granted(later, vote: true) == true)
    }

    @Test func aNodeThatCannotWriteRefusesVotes() {
        var core = Self.core()
        core.storageHealthChanged(healthy: false)
        let vote = core.receive(.vote(VoteRequest(term: 1, voters: ["n1", "n2", "n3"], transfer: false)), from: "n2", now: 10)
        #expect(Self.granted(vote, vote: true) == false)
        // A failed vote write: the candidate gives up its campaign.
        var candidate = Self.core()
        let at = Self.tickUntilPreVote(&candidate, from: 0)
        _ = candidate.receive(.preVoteResponse(VoteResponse(term: 1, granted: true)), from: "n2", now: at + 1)
        #expect(candidate.role == .candidate)
        _ = candidate.termVoteWriteFailed(now: at + 2)
        #expect(candidate.role == .follower)
    }
}
