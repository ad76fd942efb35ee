// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IJointLedger
 * @notice The external surface of the joint ledger: the types, every custom error, every event
 * and every external function of the deployed `JointLedger` contract.
 * @dev Errors are named `Component_Reason` and carry the values a caller needs to understand
 * the rejection. Events are past tense and emitted right after the state change they report.
 */
interface IJointLedger {
    // ------------------------------------------------------------------ types

    /// @notice A member's role. Platforms and regulators vote; auditors only read.
    enum Role {
        None,
        Platform,
        Regulator,
        Auditor
    }

    /// @notice What a governance proposal does when it executes.
    enum ProposalKind {
        AddMember,
        RemoveMember,
        RotateKey,
        ChangeThreshold
    }

    /// @notice A consortium member as stored on chain.
    /// @dev `publicKey` is the raw SM2 point x || y (64 bytes); signatures are checked off chain.
    struct Member {
        Role role;
        bool active;
        string name;
        bytes publicKey;
    }

    /// @notice One initial member passed to the constructor.
    struct InitialMember {
        address account;
        Role role;
        string name;
        bytes publicKey;
    }

    /// @notice A governance proposal with its arguments and approval state.
    /// @dev Only the fields of its `kind` are meaningful; the others are zero.
    /// `approvals` counts approvers that are active voters now (see `execute`).
    struct Proposal {
        ProposalKind kind;
        address proposer;
        address account;
        Role role;
        string name;
        bytes publicKey;
        uint256 newThreshold;
        address[] approvers;
        uint256 approvals;
        bool executed;
    }

    /// @notice An anchored checkpoint of one log. The SM2 signature is only in the event.
    struct Checkpoint {
        uint64 treeSize;
        uint64 timestamp;
        uint64 blockNumber;
        uint64 blockTime;
        bytes32 root;
    }

    /// @notice Who recorded a direct commitment, and in which block.
    struct CommitmentRecord {
        address platform;
        uint64 blockNumber;
    }

    /// @notice A regulator's disclosure request and its answer, if any.
    struct DisclosureRequest {
        address regulator;
        uint64 requestedBlock;
        address platform;
        uint64 fulfilledBlock;
        bool fulfilled;
        bytes32 commitment;
        bytes32 caseId;
        bytes32 responseDigest;
    }

    // ------------------------------------------------------------------ errors

    /// @notice `account` is not an active member (never was, or was removed).
    error Membership_NotActiveMember(address account);
    /// @notice `account` is an active member but not a voter (platform or regulator).
    error Membership_NotVoter(address account);
    /// @notice `account` is not an active platform.
    error Membership_NotPlatform(address account);
    /// @notice `account` is not an active regulator.
    error Membership_NotRegulator(address account);
    /// @notice `account` is already an active member.
    error Membership_AlreadyMember(address account);
    /// @notice The zero address cannot be a member.
    error Membership_InvalidAccount(address account);
    /// @notice A member must have a role other than `None`.
    error Membership_InvalidRole();
    /// @notice A member's name must not be empty.
    error Membership_EmptyName();
    /// @notice An SM2 public key must be exactly 64 bytes (x || y); `length` was given.
    error Membership_InvalidPublicKey(uint256 length);

    /// @notice The threshold `threshold` is not within 1..`voters`.
    error Governance_InvalidThreshold(uint256 threshold, uint256 voters);
    /// @notice No proposal has id `id`.
    error Governance_UnknownProposal(uint256 id);
    /// @notice `voter` has already approved proposal `id`.
    error Governance_AlreadyApproved(uint256 id, address voter);
    /// @notice Proposal `id` has already executed.
    error Governance_AlreadyExecuted(uint256 id);
    /// @notice Proposal `id` has `approvals` valid approvals, fewer than `threshold`.
    error Governance_ThresholdNotReached(uint256 id, uint256 approvals, uint256 threshold);

    /// @notice Log `logId` belongs to `owner`, not to `caller`.
    error Checkpoint_NotLogOwner(bytes32 logId, address owner, address caller);
    /// @notice Tree size `given` is not larger than the latest anchored size `latest`.
    error Checkpoint_TreeSizeNotIncreasing(bytes32 logId, uint64 latest, uint64 given);
    /// @notice Log `logId` has no checkpoint of size `treeSize`.
    error Checkpoint_UnknownTreeSize(bytes32 logId, uint64 treeSize);
    /// @notice Log `logId` has no checkpoint at all.
    error Checkpoint_UnknownLog(bytes32 logId);

    /// @notice `commitment` is already recorded on chain.
    error Commitment_AlreadyRecorded(bytes32 commitment);
    /// @notice `commitment` was never recorded on chain.
    error Commitment_NotRecorded(bytes32 commitment);

    /// @notice The addressee `platform` of a disclosure request is not an active platform.
    error Disclosure_TargetNotPlatform(address platform);
    /// @notice No disclosure request has id `requestId`.
    error Disclosure_UnknownRequest(uint256 requestId);
    /// @notice Request `requestId` is addressed to `addressee`, not to `caller`.
    error Disclosure_NotAddressee(uint256 requestId, address addressee, address caller);
    /// @notice Request `requestId` has already been fulfilled.
    error Disclosure_AlreadyFulfilled(uint256 requestId);

    // ------------------------------------------------------------------ events

    /// @notice `account` became an active member.
    event MemberAdded(address indexed account, Role role, string name, bytes publicKey);
    /// @notice `account` is no longer an active member.
    event MemberRemoved(address indexed account);
    /// @notice `account`'s SM2 public key is now `newKey`.
    event KeyRotated(address indexed account, bytes oldKey, bytes newKey);
    /// @notice The approval threshold changed from `oldThreshold` to `newThreshold`.
    event ThresholdChanged(uint256 oldThreshold, uint256 newThreshold);
    /// @notice `proposer` created proposal `id`; `account` is its subject (zero for thresholds).
    event ProposalCreated(
        uint256 indexed id, ProposalKind kind, address indexed proposer, address indexed account
    );
    /// @notice `voter` approved proposal `id` (proposing counts as approving).
    event ProposalApproved(uint256 indexed id, address indexed voter);
    /// @notice Proposal `id` executed with `approvals` valid approvals, triggered by `executor`.
    event ProposalExecuted(uint256 indexed id, address indexed executor, uint256 approvals);

    /// @notice The first checkpoint of `logId` bound the log to `platform`.
    event LogOpened(bytes32 indexed logId, address indexed platform);
    /// @notice `platform` anchored a checkpoint of `logId`; `signature` is its SM2 signature.
    event CheckpointAnchored(
        bytes32 indexed logId,
        address indexed platform,
        uint64 indexed treeSize,
        bytes32 root,
        uint64 timestamp,
        bytes signature
    );

    /// @notice `platform` recorded `commitment` directly on chain.
    event CommitmentRecorded(bytes32 indexed commitment, address indexed platform);

    /// @notice `regulator` asked `platform` to open `commitment` for case `caseId`.
    event DisclosureRequested(
        uint256 indexed requestId,
        address indexed regulator,
        address indexed platform,
        bytes32 commitment,
        bytes32 caseId
    );
    /// @notice `platform` answered request `requestId`; the opening itself travels off chain.
    event DisclosureFulfilled(
        uint256 indexed requestId, address indexed platform, bytes32 responseDigest
    );

    // ------------------------------------------------------------------ membership

    /// @notice The member record of `account` (role `None` if it was never a member).
    function member(address account) external view returns (Member memory);

    /// @notice Every address that was ever a member, in order of admission (see `active`).
    function members() external view returns (address[] memory);

    /// @notice The number of approvals a proposal needs (M of M-of-N).
    function threshold() external view returns (uint256);

    /// @notice The number of active voters (active platforms and regulators, N of M-of-N).
    function activeVoterCount() external view returns (uint256);

    // ------------------------------------------------------------------ governance

    /**
     * @notice Proposes to admit `account` with `role`, `name` and SM2 `publicKey`.
     * @dev Requirements: caller is an active voter; `account` is non-zero and not an active
     * member; `role` is not `None`; `name` is not empty; `publicKey` is 64 bytes.
     * The proposer's approval is counted; executes at once if that reaches the threshold.
     * @return id The new proposal's id (ids start at 1).
     */
    function proposeAddMember(
        address account,
        Role role,
        string calldata name,
        bytes calldata publicKey
    ) external returns (uint256 id);

    /**
     * @notice Proposes to deactivate `account`.
     * @dev Requirements: caller is an active voter; `account` is an active member; if it is a
     * voter, the remaining voters must still reach the threshold (re-checked at execution).
     * @return id The new proposal's id.
     */
    function proposeRemoveMember(address account) external returns (uint256 id);

    /**
     * @notice Proposes to replace `account`'s SM2 public key with `newKey`.
     * @dev Requirements: caller is an active voter; `account` is an active member;
     * `newKey` is 64 bytes.
     * @return id The new proposal's id.
     */
    function proposeRotateKey(address account, bytes calldata newKey) external returns (uint256 id);

    /**
     * @notice Proposes to set the approval threshold to `newThreshold`.
     * @dev Requirements: caller is an active voter; 1 <= `newThreshold` <= active voters
     * (re-checked at execution). Open proposals are not re-evaluated when it executes: each
     * is judged against the threshold in force when it is next approved or executed.
     * @return id The new proposal's id.
     */
    function proposeThresholdChange(uint256 newThreshold) external returns (uint256 id);

    /**
     * @notice Approves proposal `id`; executes it when the approvals reach the threshold.
     * @dev Requirements: caller is an active voter; the proposal exists, has not executed and
     * was not approved by the caller. Approvals are counted at this moment against the
     * threshold in force now, counting only approvers that are still active voters. If the
     * proposal's action is no longer valid (e.g. the member was removed meanwhile) the whole
     * approval reverts with the action's error.
     */
    function approve(uint256 id) external;

    /**
     * @notice Executes proposal `id`, e.g. after the threshold was lowered below its approvals.
     * @dev Requirements: caller is an active voter; the proposal exists and has not executed;
     * its approvals by still-active voters reach the current threshold; its action is valid.
     */
    function execute(uint256 id) external;

    /// @notice Proposal `id` with its arguments and current valid approval count.
    /// @dev Reverts with `Governance_UnknownProposal` if there is no such proposal.
    function proposal(uint256 id) external view returns (Proposal memory);

    /// @notice The number of proposals ever created (the latest id).
    function proposalCount() external view returns (uint256);

    // ------------------------------------------------------------------ checkpoints

    /**
     * @notice Anchors a checkpoint (`treeSize`, `root`, `timestamp`) of log `logId`.
     * @dev Requirements: caller is an active platform; the log is new (then it is bound to the
     * caller) or owned by the caller; `treeSize` is larger than the log's latest tree size.
     * `signature` is the platform's SM2 signature over the checkpoint; it is carried in the
     * event only and verified off chain against the platform's registered key.
     */
    function anchorCheckpoint(
        bytes32 logId,
        uint64 treeSize,
        bytes32 root,
        uint64 timestamp,
        bytes calldata signature
    ) external;

    /// @notice The latest checkpoint of `logId`; reverts with `Checkpoint_UnknownLog` if none.
    function latestCheckpoint(bytes32 logId) external view returns (Checkpoint memory);

    /// @notice The checkpoint of `logId` at `treeSize`; reverts `Checkpoint_UnknownTreeSize`.
    function checkpointAt(bytes32 logId, uint64 treeSize) external view returns (Checkpoint memory);

    /// @notice The `index`-th checkpoint of `logId` in anchoring order.
    /// @dev Reverts with `Checkpoint_UnknownLog` if `index` is out of range.
    function checkpointByIndex(bytes32 logId, uint256 index)
        external
        view
        returns (Checkpoint memory);

    /// @notice The number of checkpoints anchored for `logId`.
    function checkpointCount(bytes32 logId) external view returns (uint256);

    /// @notice The platform that owns `logId` (zero if the log was never anchored).
    function logOwner(bytes32 logId) external view returns (address);

    /// @notice The logs opened by `platform`, in order of opening.
    function logsOf(address platform) external view returns (bytes32[] memory);

    // ------------------------------------------------------------------ direct commitments

    /**
     * @notice Records one `commitment` on chain at once (direct mode).
     * @dev Requirements: caller is an active platform; `commitment` was not recorded before.
     */
    function commit(bytes32 commitment) external;

    /// @notice Whether `commitment` has been recorded directly.
    function isCommitted(bytes32 commitment) external view returns (bool);

    /// @notice Who recorded `commitment` and when; reverts `Commitment_NotRecorded` if nobody.
    function commitmentRecord(bytes32 commitment) external view returns (CommitmentRecord memory);

    /// @notice The number of directly recorded commitments.
    function commitmentCount() external view returns (uint256);

    // ------------------------------------------------------------------ disclosures

    /**
     * @notice Logs a request that `platform` disclose the opening of `commitment` for `caseId`.
     * @dev Requirements: caller is an active regulator; `platform` is an active platform.
     * @return requestId The new request's id (ids start at 1).
     */
    function requestDisclosure(address platform, bytes32 commitment, bytes32 caseId)
        external
        returns (uint256 requestId);

    /**
     * @notice Logs the answer to request `requestId`: the digest of the encrypted opening.
     * @dev Requirements: caller is an active platform and the request's addressee; the
     * request exists and was not fulfilled before.
     */
    function fulfilDisclosure(uint256 requestId, bytes32 responseDigest) external;

    /// @notice Disclosure request `requestId`; reverts `Disclosure_UnknownRequest` if none.
    function disclosureRequest(uint256 requestId) external view returns (DisclosureRequest memory);

    /// @notice The number of disclosure requests ever made (the latest id).
    function disclosureRequestCount() external view returns (uint256);
}
