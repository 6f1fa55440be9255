/* Leader election of the clustered mesh (cluster-design §3.4, §3.9, §5), following Sources/Cluster/Core/MeshCore.swift.
 * Checked by scripts/check-model. Safety property: the ghost map leaderOf[term] never gets a second node (asserted in
 * becomeLeader). N nodes, terms bounded by MAXTERM.
 *
 * NETWORK: a bag of idempotent messages. Sending sets a bit that is never cleared (except where the message can no
 * longer have any effect, see "dead messages"); any message may be delivered never, once or many times, in any order,
 * which covers loss, duplication, reordering and delay.
 *   VOTE requests        vReq[t] bit c          c asked for votes in term t (vXfer[t] bit c: as a transfer)
 *   vote grants          vGrant[c*T1+t] bit v   v granted its vote to c in term t
 *   PRE_VOTE requests    pvAsked[c]             c asked for pre-votes for term[c]+1
 *   pre-vote grants      pvGrant[c] bit v       v granted c's pre-vote for term[c]+1
 *   STATE from j         carries j's current term (term adoption); a leader's heartbeat is read from the ghost
 *                        leaderOf[] ("j led term t, so STATE{term t, role leader} from j may still be in flight"),
 *                        so stale heartbeats are delivered too
 *   TIMEOUT_NOW from j   exists once j led the receiver's term
 *
 * NODE STATE. Durable: term[], voted[] (a restart keeps them unless FORGET_VOTE). Volatile: role[] (follower,
 * candidate, leader) and heard[]. heard[v] folds MeshCore's leaderId and "lastLeaderContact within E" into one byte:
 * NONE, or the leader that v heard within E. A leader's heartbeat sets it; the adversary may clear it at any time
 * (E passed, the connection closed, a pause). While v hears a leader, or is one, it refuses pre-votes and
 * non-transfer votes from anyone but that leader (handleVoteRequest: `!request.transfer, hearsLeader(now:),
 * leaderId != peer`).
 *
 * PEER LISTS. cfg[v] is the bitmask of v's voter list (itself included).
 *   MEMBER  the code's `receive` drops a message whose sender is not in `settings.peers` (and the handshake refuses an
 *           unknown node id): v handles a message from j only if j is in cfg[v].
 *   GUARD   `settings.isCompatible(with: request.voters)`, checked by the voter in handleVoteRequest for pre-votes and
 *           votes: granted only between nodes whose lists differ by at most one node, popcount(cfg[a]^cfg[b]) <= 1.
 *           The code checks it on the voter's side only; the relation is symmetric, so also checking it when
 *           counting, as the design note states it, changes nothing. Both are done here.
 *   Quorum  popcount(votes & cfg[v]) >= popcount(cfg[v])/2 + 1 (`settings.quorum`, on the node's own list).
 *   A node campaigns only if its own list holds it (canCampaign).
 *
 * EXACT REDUCTIONS (they remove states, not behaviours that matter for the property):
 *   - Counting. A (pre-)candidate's tally `votes` is seen by nobody else, only grows until the node leaves the round,
 *     and the adversary may hold back any response; so instead of one step per counted response, the node may win
 *     ("the adversary delivered enough of them") as soon as the grants in the bag reach its quorum. Likewise the
 *     pre-candidate role: a node that asked for pre-votes (pvAsked) is a follower that heard no leader; a later
 *     heartbeat makes it an ordinary follower, and the code then needs one more timeout (which clears heard and
 *     re-sends the request) before stale grants count again; the model lets it win at once, which is the same
 *     two steps in one.
 *   - Dead messages. A grant for (c, t) can only be counted while c is a candidate in t, and terms only grow, so
 *     grant bits for a round c has left are cleared (canon), and a grant to a finished round is not recorded. Once
 *     every node's term is above t, the requests and the ghost leaderOf[t] of term t are cleared too (a message of
 *     term t then changes nothing anywhere, and term t can get no leader any more). Not with DISK_LOSS, where a
 *     node's term can fall back to 0 and a message to or from its former life can count again.
 *   - Pre-vote grants are recorded eagerly (see PVC): a grant changes nothing at the voter, so recording it at the
 *     first moment it could have been sent, and letting the adversary decide when (or whether) it is counted, keeps
 *     every behaviour and drops the interleavings of when each grant was sent.
 *   - Messages that would change nothing give no transition: every delivery is a guarded option per sender j (and
 *     term t) of the node's one atomic choice, unrolled by the preprocessor, with no select/else-skip.
 *
 * SWITCHES (spin -DNAME=value):
 *   N, MAXTERM     size and term bound (defaults 3, 3); N <= 5, MAXTERM <= 4
 *   C0..C4         each node's voter list (default: every node lists all N nodes)
 *   FORGET_VOTE=1  bug: a restart loses votedFor (not persisted)                             -> must violate
 *   GUARD=0        no peer-list compatibility guard
 *   MEMBER=0       messages from nodes outside one's own list are handled too (as in Appendix A's model)
 *   PRE_VOTE=0     campaign without a pre-vote round
 *   TRANSFER=0     no TIMEOUT_NOW / transfer votes
 *   STICKY_OFF=1   no leader stickiness (heard[] never set)
 *   DISK_LOSS=1    a restart may also lose the whole vote record (term 0, no vote) and then starts in amnesia
 *                  (MeshCore's amnesia rule: no vote until every peer was heard, then only above the highest term
 *                  heard; no campaign meanwhile). STATE messages may then be stale (any term up to the sender's).
 *   NEWMESH=1|0    with DISK_LOSS: add (1, an earlier, unsafe version of the code) or not (0, the code now) a "brand-new mesh" way out of amnesia
 *                  (2E after start, every term heard is 0, at least one peer heard, own term 0)
 *   FLOOR_DURABLE  with DISK_LOSS: 1 (the code now: the "@amnesiac"/"@unknown" vote-record values) the amnesia and the
 *                  floor survive a restart; 0 (an earlier, unsafe version) they were volatile
 *   LOSSES         with DISK_LOSS: how many disk losses a run may have (default 1; the amnesia rule leans on the
 *                  other nodes' durable terms, so it cannot survive the voter and its candidate both losing theirs)
 *
 * Pitfalls kept in mind: no blocking guard after a select inside atomic (there is no select at all, and the only
 * guard that can block is the first statement of the atomic sequence); every macro and inline parameter is
 * parenthesised; no Promela line starts with && or || (spin rejects that).
 */

#ifndef N
#define N 3
#endif
#ifndef MAXTERM
#define MAXTERM 3
#endif
#ifndef FORGET_VOTE
#define FORGET_VOTE 0
#endif
#ifndef GUARD
#define GUARD 1
#endif
#ifndef MEMBER
#define MEMBER 1
#endif
#ifndef PRE_VOTE
#define PRE_VOTE 1
#endif
#ifndef TRANSFER
#define TRANSFER 1
#endif
#ifndef STICKY_OFF
#define STICKY_OFF 0
#endif
#ifndef DISK_LOSS
#define DISK_LOSS 0
#endif
#ifndef NEWMESH
#define NEWMESH 0
#endif
#ifndef FLOOR_DURABLE
#define FLOOR_DURABLE 1
#endif

#define ALL ((1 << N) - 1)
#ifndef C0
#define C0 ALL
#endif
#ifndef C1
#define C1 ALL
#endif
#ifndef C2
#define C2 ALL
#endif
#ifndef C3
#define C3 ALL
#endif
#ifndef C4
#define C4 ALL
#endif

#define NONE 255
#define FOL  0
#define CAND 2
#define LEAD 3
#define T1   (MAXTERM + 1)

/* Bit and population count as plain expressions (no loop, no helper variable). */
#define BIT(m, i)  (((m) >> (i)) & 1)
#define POP(m)     (BIT(m, 0) + BIT(m, 1) + BIT(m, 2) + BIT(m, 3) + BIT(m, 4))

byte cfg[N];                 /* voter list of each node (bitmask); static */
byte ok[N];                  /* static: the nodes v handles and whose lists are compatible (KNOWS && COMPAT) */
byte term[N];                /* durable */
byte voted[N];               /* durable (unless FORGET_VOTE) */
byte role[N];
byte heard[N];               /* the leader heard within E, or NONE */

bool pvAsked[N];
byte pvGrant[N];
byte vReq[T1];
byte vXfer[T1];
byte vGrant[N * T1];
byte leaderOf[T1];           /* ghost: the node that became leader of term t */

#if DISK_LOSS
bool amn[N];                 /* started without its vote record: votes held back */
byte amnHeard[N];            /* peers heard since (bitmask) */
byte amnHigh[N];             /* highest term heard from them */
byte amnBase[N * N];         /* amnBase[v*N+j]: j's term when v last restarted (see STALE_OK) */
byte vfloor[N];              /* voteFloor: no vote at or below it (volatile) */
#ifndef LOSSES
#define LOSSES 1
#endif
byte lossLeft = LOSSES;      /* disk losses still allowed in a run */
#define AMN(v)      amn[v]
#define FLOOR(v)    vfloor[v]
#define AMN_ALL(v)  ((amnHeard[v] | (1 << (v))) == cfg[v])
#else
#define AMN(v)      0
#define FLOOR(v)    0
#endif

#define INLIST(v, m)    BIT(m, v)
#define KNOWS(v, j)     (!MEMBER || INLIST(j, cfg[v]))               /* v handles messages from j */
#define COMPAT(a, b)    (!GUARD || POP(cfg[a] ^ cfg[b]) <= 1)       /* settings.isCompatible */
#define OK(v, j)        BIT(ok[v], j)       /* v handles j's messages and their lists are compatible (static) */
/* quorum of v on its own list, counting itself and the grants in mask m from nodes it handles and is compatible with */
#define QUORUM(v, m)    (POP((((m) & ok[v]) | (1 << (v))) & cfg[v]) >= POP(cfg[v]) / 2 + 1)
/* stickiness: `hearsLeader(now:) && leaderId != peer`; a leader hears itself (its leaderId is itself, never c) */
#define STICKY(v, c)    (role[v] == LEAD || (heard[v] != NONE && heard[v] != (c)))
#define CAN_CAMPAIGN(v) (role[v] != LEAD && INLIST(v, cfg[v]) && !AMN(v) && term[v] < MAXTERM)

/* a grant to c in term t can still be counted (c is a candidate in t), or might be again (DISK_LOSS) */
#define LIVE_GRANT(c, t) (DISK_LOSS || (role[c] == CAND && term[c] == (t)))

#if N == 2
#define ALLPAST(k) (term[0] > (k) && term[1] > (k))
#elif N == 3
#define ALLPAST(k) (term[0] > (k) && term[1] > (k) && term[2] > (k))
#elif N == 4
#define ALLPAST(k) (term[0] > (k) && term[1] > (k) && term[2] > (k) && term[3] > (k))
#else
#define ALLPAST(k) (term[0] > (k) && term[1] > (k) && term[2] > (k) && term[3] > (k) && term[4] > (k))
#endif
/* grants to v for a round v has left; and, once every node is past term k, everything about term k (no vote, grant
   or heartbeat of term k can be delivered to any effect, and nobody can become leader of it any more) */
#define CLR(v, k) \
  vGrant[(v) * T1 + (k)] = (((k) < term[v] || ((k) == term[v] && role[v] != CAND)) -> 0 : vGrant[(v) * T1 + (k)]); \
  vReq[k] = (ALLPAST(k) -> 0 : vReq[k]); vXfer[k] = (ALLPAST(k) -> 0 : vXfer[k]); \
  leaderOf[k] = (ALLPAST(k) -> NONE : leaderOf[k])
/* clear dead messages */
inline canon(v) {
#if !DISK_LOSS
  CLR(v, 1);
#if MAXTERM >= 2
  CLR(v, 2);
#endif
#if MAXTERM >= 3
  CLR(v, 3);
#endif
#if MAXTERM >= 4
  CLR(v, 4);
#endif
#endif
  skip
}

/* Pre-vote grants are recorded eagerly. v's grant to c's PRE_VOTE (for term[c] + 1) may be sent whenever v would
   grant it: term[c] + 1 > term[v], v handles c's messages, compatible lists, v hears no leader but c. It changes
   nothing at v (a pre-vote never touches term or votedFor), and the adversary may hold back any response and c may
   win later or never; so recording every grant that could have been sent, at the first moment it could have been,
   loses no behaviour and saves the interleavings of when each grant was sent. */
#define PVC(c, v) (pvAsked[c] && OK(c, v) && OK(v, c) && term[v] <= term[c] && !STICKY(v, c))
/* An action changes only its own node's state, so only the grants to it (its row) and by it (its column) can
   become possible. */
#define PVROW(v) pvGrant[v] = pvGrant[v] | (PVC(v, 0) << 0) | (PVC(v, 1) << 1) PV_2(v) PV_3(v) PV_4(v);
#define PVCOL(v) pvGrant[0] = pvGrant[0] | (PVC(0, v) << (v)); pvGrant[1] = pvGrant[1] | (PVC(1, v) << (v)); \
                 PVC_2(v) PVC_3(v) PVC_4(v)
#if N > 2
#define PV_2(v) | (PVC(v, 2) << 2)
#define PVC_2(v) pvGrant[2] = pvGrant[2] | (PVC(2, v) << (v));
#else
#define PV_2(v)
#define PVC_2(v)
#endif
#if N > 3
#define PV_3(v) | (PVC(v, 3) << 3)
#define PVC_3(v) pvGrant[3] = pvGrant[3] | (PVC(3, v) << (v));
#else
#define PV_3(v)
#define PVC_3(v)
#endif
#if N > 4
#define PV_4(v) | (PVC(v, 4) << 4)
#define PVC_4(v) pvGrant[4] = pvGrant[4] | (PVC(4, v) << (v));
#else
#define PV_4(v)
#define PVC_4(v)
#endif

/* the end of every step of node v: clear dead messages, record the pre-vote grants that became possible */
inline step(v) {
  canon(v);
#if PRE_VOTE
  PVROW(v) PVCOL(v)
#endif
  skip
}

/* the node's term changes: its pre-vote round (for the old term + 1) is void */
inline setTerm(v, t) {
  term[v] = (t); pvAsked[v] = 0; pvGrant[v] = 0
}

/* becomeFollower(term: t, leader: nil); a leader steps down */
inline becomeFollower(v, t) {
  if
  :: (t) != term[v] -> setTerm(v, t); voted[v] = NONE
  :: else -> skip
  fi;
  role[v] = FOL; heard[v] = NONE
}

inline becomeLeader(v) {
  assert(leaderOf[term[v]] == NONE || leaderOf[term[v]] == (v));
  leaderOf[term[v]] = (v);
  role[v] = LEAD; heard[v] = NONE
}

/* becomeCandidate: its own vote is durable first (persistTermVote), then VOTE to every peer */
inline becomeCandidate(v, xfer) {
  setTerm(v, term[v] + 1); role[v] = CAND; voted[v] = (v); heard[v] = NONE;
  if
  :: QUORUM(v, 0) -> becomeLeader(v)
  :: else ->
     vReq[term[v]] = vReq[term[v]] | (1 << (v));
     if :: (xfer) -> vXfer[term[v]] = vXfer[term[v]] | (1 << (v)) :: else -> skip fi
  fi
}

#if DISK_LOSS
/* handleState: a STATE from j carrying term t reached v; amnesia records it */
inline amnHear(v, j, t) {
  if
  :: amn[v] ->
     amnHeard[v] = amnHeard[v] | (1 << (j));
     if :: (t) > amnHigh[v] -> amnHigh[v] = (t) :: else -> skip fi
  :: else -> skip
  fi
}
#define AMN_CHANGES(j, t) (amn[me] && (!BIT(amnHeard[me], j) || (t) > amnHigh[me]))
#define AMN_HEAR(j, t)    amnHear(me, j, t);
/* A STATE may be stale (any term up to the sender's), but not from before the receiver's last restart: connections
   belong to a process, so what a peer sent to the previous process is gone. The amnesia rule depends on that. */
#define STALE_OK(j, t)    ((t) <= term[j] && (!amn[me] || (t) >= amnBase[me * N + (j)]))
#define CLRBASE(v) amnBase[(v) * N + 0] = 0; amnBase[(v) * N + 1] = 0; CLRBASE_2(v) CLRBASE_3(v) CLRBASE_4(v)
#define BASE(v) amnBase[(v) * N + 0] = term[0]; amnBase[(v) * N + 1] = term[1]; BASE_2(v) BASE_3(v) BASE_4(v)
#if N > 2
#define BASE_2(v) amnBase[(v) * N + 2] = term[2];
#define CLRBASE_2(v) amnBase[(v) * N + 2] = 0;
#else
#define BASE_2(v)
#define CLRBASE_2(v)
#endif
#if N > 3
#define BASE_3(v) amnBase[(v) * N + 3] = term[3];
#define CLRBASE_3(v) amnBase[(v) * N + 3] = 0;
#else
#define BASE_3(v)
#define CLRBASE_3(v)
#endif
#if N > 4
#define BASE_4(v) amnBase[(v) * N + 4] = term[4];
#define CLRBASE_4(v) amnBase[(v) * N + 4] = 0;
#else
#define BASE_4(v)
#define CLRBASE_4(v)
#endif
#else
#define AMN_CHANGES(j, t) 0
#define AMN_HEAR(j, t)
#define STALE_OK(j, t)    ((t) == term[j])
#endif
#if DISK_LOSS
#define HB_OK(j, t)       (!amn[me] || (t) >= amnBase[me * N + (j)])
#else
#define HB_OK(j, t)       1
#endif

/* ---- unrolling over senders j and terms t ---- */
#if N == 2
#define FOR_J(X) X(0) X(1)
#elif N == 3
#define FOR_J(X) X(0) X(1) X(2)
#elif N == 4
#define FOR_J(X) X(0) X(1) X(2) X(3)
#else
#define FOR_J(X) X(0) X(1) X(2) X(3) X(4)
#endif
#if MAXTERM == 1
#define FOR_T(X, j) X(j, 1)
#elif MAXTERM == 2
#define FOR_T(X, j) X(j, 1) X(j, 2)
#elif MAXTERM == 3
#define FOR_T(X, j) X(j, 1) X(j, 2) X(j, 3)
#else
#define FOR_T(X, j) X(j, 1) X(j, 2) X(j, 3) X(j, 4)
#endif
#if N > 2
#define FOR_T_2(X) FOR_T(X, 2)
#else
#define FOR_T_2(X)
#endif
#if N > 3
#define FOR_T_3(X) FOR_T(X, 3)
#else
#define FOR_T_3(X)
#endif
#if N > 4
#define FOR_T_4(X) FOR_T(X, 4)
#else
#define FOR_T_4(X)
#endif
#define FOR_JT(X) FOR_T(X, 0) FOR_T(X, 1) FOR_T_2(X) FOR_T_3(X) FOR_T_4(X)

/* ---- deliveries (me receives from j) ---- */

/* j's VOTE for term t >= mine (handleVoteRequest, the code's checks in the code's order: peer-list guard, stale
   term, stickiness unless a transfer, amnesia and vote floor, adopt the term, one vote per term) */
#define V_GRANT(j, t) \
  :: (j) != me && (t) >= term[me] && BIT(vReq[t], j) && OK(me, j) && \
              (BIT(vXfer[t], j) || !STICKY(me, j)) && !AMN(me) && (t) > FLOOR(me) && \
              ((t) > term[me] || voted[me] == NONE || \
               (voted[me] == (j) && LIVE_GRANT(j, t) && !BIT(vGrant[(j) * T1 + (t)], me))) -> \
       if :: (t) > term[me] -> becomeFollower(me, t) :: else -> skip fi; \
       if \
       :: voted[me] == NONE || voted[me] == (j) -> \
          voted[me] = (j); \
          if :: LIVE_GRANT(j, t) -> vGrant[(j) * T1 + (t)] = vGrant[(j) * T1 + (t)] | (1 << me) :: else -> skip fi \
       :: else -> skip \
       fi

/* a message from j carrying its term t (STATE, or a refusal, which carries the responder's term) */
#define STATE_T(j, t) \
  :: (j) != me && KNOWS(me, j) && STALE_OK(j, t) && ((t) > term[me] || AMN_CHANGES(j, t)) -> \
       AMN_HEAR(j, t) \
       if :: (t) > term[me] -> becomeFollower(me, t) :: else -> skip fi
#define STATE_0(j) STATE_T(j, 0)

/* a leader's heartbeat: STATE{term t >= mine, role leader} from j (possibly stale: j once led term t) */
#if STICKY_OFF
#define HEARD(j) NONE
#else
#define HEARD(j) (j)
#endif
#define HEARTBEAT(j, t) \
  :: (j) != me && (t) >= term[me] && leaderOf[t] == (j) && KNOWS(me, j) && HB_OK(j, t) && \
              ((t) > term[me] || AMN_CHANGES(j, t) || (role[me] != LEAD && (role[me] != FOL || heard[me] != HEARD(j)))) -> \
       AMN_HEAR(j, t) \
       if :: (t) > term[me] -> becomeFollower(me, t) :: else -> skip fi; \
       if \
       :: role[me] != LEAD -> role[me] = FOL; heard[me] = HEARD(j) \
       :: else -> skip \
       fi

/* One process per node. Each step is one atomic choice among the enabled actions of the node, followed by the
   bookkeeping of step(me); the choice is the first statement of the atomic sequence, so a node with no enabled action
   simply waits (no half-done step). */
proctype Node(byte me) {
end:
  do
  :: atomic {
  if
  /* election timeout (a tick at the deadline, canCampaign): startPreVote, or becomeCandidate without pre-vote.
     With PRE_VOTE, a candidate that times out becomes a pre-candidate again in its term. */
#if PRE_VOTE
  :: CAN_CAMPAIGN(me) && (role[me] != FOL || heard[me] != NONE || !pvAsked[me]) ->
       role[me] = FOL; heard[me] = NONE;
       if
       :: QUORUM(me, 0) -> becomeCandidate(me, 0)
       :: else -> pvAsked[me] = 1
       fi

  /* the pre-vote is won: the grants for term + 1 reach the quorum (handlePreVoteResponse -> becomeCandidate) */
  :: pvAsked[me] && CAN_CAMPAIGN(me) && QUORUM(me, pvGrant[me]) ->
       becomeCandidate(me, 0)
#else
  :: CAN_CAMPAIGN(me) -> becomeCandidate(me, 0)
#endif

  /* the vote is won: the grants for my term reach the quorum (handleVoteResponse -> becomeLeader) */
  :: role[me] == CAND && QUORUM(me, vGrant[me * T1 + term[me]]) ->
       becomeLeader(me)

  FOR_JT(V_GRANT)
  FOR_JT(STATE_T)
#if DISK_LOSS
  FOR_J(STATE_0)
#endif
  FOR_JT(HEARTBEAT)

#if TRANSFER
  /* TIMEOUT_NOW from the leader of my term (handleTimeoutNow: a follower, leaderId == peer, canCampaign):
     campaign at once, skipping the pre-vote; voters ignore stickiness for it */
  :: role[me] == FOL && heard[me] != NONE && CAN_CAMPAIGN(me) &&
              leaderOf[term[me]] == heard[me] && OK(me, heard[me]) ->
       becomeCandidate(me, 1)
#endif

  /* the adversary: the leader was not heard within E (or its connection closed, or this node was paused) */
  :: heard[me] != NONE -> heard[me] = NONE

  /* crash and restart: role and contacts are lost; term and votedFor are durable (unless FORGET_VOTE) */
  :: role[me] != FOL || heard[me] != NONE || (FORGET_VOTE && voted[me] != NONE) || DISK_LOSS ->
       role[me] = FOL; heard[me] = NONE;
#if FORGET_VOTE
       voted[me] = NONE;
#endif
#if DISK_LOSS
       amnHeard[me] = 0; amnHigh[me] = 0;
#if !FLOOR_DURABLE
       /* as the core is now: voteFloor is volatile, and a term record written during amnesia (becomeFollower's
          persistTermVote) makes the next start look like one with its vote record (votesRemembered) */
       vfloor[me] = 0;
       if :: amn[me] && term[me] != 0 -> amn[me] = 0 :: else -> skip fi;
#endif
       if :: amn[me] -> BASE(me) :: else -> CLRBASE(me) fi;
#endif

#if DISK_LOSS
  /* restart with the vote record lost: term 0, no vote, amnesia (the amnesia status itself survives a later plain
     restart: the model assumes the shell keeps "no vote record" until amnesia is over) */
  :: lossLeft > 0 ->
       lossLeft--; setTerm(me, 0); voted[me] = NONE; role[me] = FOL; heard[me] = NONE;
       amn[me] = 1; amnHeard[me] = 0; amnHigh[me] = 0; vfloor[me] = 0; BASE(me)

  /* amnesiaHoldsVotes at a tick: every peer heard -> votes only above the highest term heard */
  :: amn[me] && AMN_ALL(me) ->
       if :: amnHigh[me] > vfloor[me] -> vfloor[me] = amnHigh[me] :: else -> skip fi;
       if :: term[me] < vfloor[me] -> setTerm(me, vfloor[me]); voted[me] = NONE :: else -> skip fi;
       amn[me] = 0; amnHeard[me] = 0; amnHigh[me] = 0; CLRBASE(me) skip
#if NEWMESH
  /* ... or the brand-new-mesh exit: 2E after start, only term 0 heard (from at least one peer), own term 0 */
  :: amn[me] && !AMN_ALL(me) && amnHigh[me] == 0 && amnHeard[me] != 0 && term[me] == 0 ->
       amn[me] = 0; amnHeard[me] = 0; CLRBASE(me) skip
#endif
#endif
  fi;
  step(me) }
  od
}

init {
  byte i, k;
  atomic {
    cfg[0] = C0;
#if N > 1
    cfg[1] = C1;
#endif
#if N > 2
    cfg[2] = C2;
#endif
#if N > 3
    cfg[3] = C3;
#endif
#if N > 4
    cfg[4] = C4;
#endif
    for (i : 0 .. N - 1) {
      for (k : 0 .. N - 1) {
        if
        :: k != i && KNOWS(i, k) && COMPAT(i, k) -> ok[i] = ok[i] | (1 << k)
        :: else -> skip
        fi
      }
    }
    for (i : 0 .. MAXTERM) { leaderOf[i] = NONE }
    for (i : 0 .. N - 1) { voted[i] = NONE; heard[i] = NONE }
    for (i : 0 .. N - 1) { run Node(i) }
    i = 0; k = 0
  }
}
