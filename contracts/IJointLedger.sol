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
        ChangeThreshold,
        RemoveRiskDevice
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
    /// `riskEntry` is the entry a `RemoveRiskDevice` proposal removes (its `account` is the
    /// entry's adder).
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
        bytes32 riskEntry;
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

    /// @notice A listed risk device: who listed it, why, under which list-key epoch, when.
    /// @dev The device itself is only known as its 32-byte entry,
    /// HMAC-SM3(epoch key, tag("risk-device") || normalised fingerprint), see docs/risklist.md.
    /// `reason` is one of the reason codes of `addRiskDevice`.
    struct RiskDevice {
        address adder;
        uint8 reason;
        uint32 epoch;
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

    /// @notice List-key epoch `given` is not acceptable here; the current epoch is `current`
    /// (additions need the current epoch, key deliveries the current or the next one).
    error RiskList_WrongEpoch(uint32 given, uint32 current);
    /// @notice List-key epoch `epoch` is closed to additions: a key holder left or rotated its
    /// key since it was opened; a regulator must open the next epoch first.
    error RiskList_EpochClosed(uint32 epoch);
    /// @notice `account` may not hold the list key: it is not an active platform or regulator.
    error RiskList_NotKeyHolder(address account);
    /// @notice The list key of `epoch` was already delivered to `account`.
    error RiskList_KeyAlreadySet(uint32 epoch, address account);
    /// @notice The list-key ciphertext for `account` is empty.
    error RiskList_EmptyCiphertext(address account);
    /// @notice Two parallel arrays differ in length (`first` and `second` elements).
    error RiskList_LengthMismatch(uint256 first, uint256 second);
    /// @notice `reason` is not a known risk reason code (1..6).
    error RiskList_UnknownReason(uint8 reason);
    /// @notice `entry` is already listed.
    error RiskList_AlreadyListed(bytes32 entry);
    /// @notice `entry` is not listed (never was, or was removed).
    error RiskList_NotListed(bytes32 entry);
    /// @notice `entry` was listed by `adder`; `caller` may only remove it through governance.
    error RiskList_NotAdder(bytes32 entry, address adder, address caller);

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

    /// @notice `regulator` opened list-key epoch `epoch`; new entries are made under its key.
    event ListEpochOpened(uint32 indexed epoch, address indexed regulator);
    /// @notice Epoch `epoch` takes no more entries (a key holder left or rotated its key).
    event ListEpochClosed(uint32 indexed epoch);
    /// @notice `regulator` delivered the key ring of `epoch` to `account` (see `listKey`).
    event ListKeySet(uint32 indexed epoch, address indexed account, address indexed regulator);
    /// @notice `adder` listed `entry` for `reason` under the key of `epoch`.
    event RiskDeviceAdded(bytes32 indexed entry, address indexed adder, uint8 reason, uint32 epoch);
    /// @notice `entry`, listed by `adder`, was removed by `remover`: the adder itself
    /// (`proposalId` 0) or the executor of governance proposal `proposalId`.
    event RiskDeviceRemoved(
        bytes32 indexed entry, address indexed adder, address indexed remover, uint256 proposalId
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

    // ------------------------------------------------------------------ risk-device list

    /**
     * @notice Delivers list-key epoch `epoch` to `accounts`: `ciphertexts[i]` is the key ring
     * (the keys of epochs 1..`epoch`) SM2-encrypted to `accounts[i]`'s registered key.
     * @dev Requirements: caller is an active regulator; the arrays have equal lengths;
     * `epoch` is the current epoch (late deliveries, e.g. to a new member) or the next one,
     * which this call opens; every account is an active platform or regulator, has no key
     * of `epoch` yet and gets a non-empty ciphertext. Opening emits `ListEpochOpened`; each
     * delivery emits `ListKeySet`.
     */
    function setListKeys(uint32 epoch, address[] calldata accounts, bytes[] calldata ciphertexts)
        external;

    /// @notice The current list-key epoch (0 before the first key is delivered).
    function listEpoch() external view returns (uint32);

    /// @notice Whether the current epoch takes new entries (false before the first epoch and
    /// after a key holder left or rotated its key, until the next epoch is opened).
    function listEpochOpen() external view returns (bool);

    /// @notice The key-ring ciphertext of `epoch` delivered to `account` (empty if none).
    function listKey(address account, uint32 epoch) external view returns (bytes memory);

    /**
     * @notice Lists the device whose keyed hash is `entry`, for `reason`.
     * @dev Requirements: caller is an active platform or regulator; `epoch` is the current
     * epoch (the one whose key made `entry`) and open; `reason` is a known code: 1 fraud,
     * 2 account takeover, 3 money mule, 4 gambling, 5 device farm or emulator, 6 stolen
     * device; `entry` is not listed.
     */
    function addRiskDevice(bytes32 entry, uint32 epoch, uint8 reason) external;

    /// @notice Lists several devices at once; as `addRiskDevice` for each (all or none).
    /// @dev Also reverts `RiskList_LengthMismatch` when the arrays differ in length.
    function addRiskDevices(bytes32[] calldata entries, uint32 epoch, uint8[] calldata reasons)
        external;

    /**
     * @notice Removes `entry`, as the member that listed it.
     * @dev Requirements: caller is an active platform or regulator; `entry` is listed, by the
     * caller (anyone else goes through `proposeRemoveRiskDevice`).
     */
    function removeRiskDevice(bytes32 entry) external;

    /**
     * @notice Proposes to remove `entry` by governance (any member's entry).
     * @dev Requirements: caller is an active voter; `entry` is listed (re-checked at
     * execution). The proposal's `account` is the entry's adder.
     * @return id The new proposal's id.
     */
    function proposeRemoveRiskDevice(bytes32 entry) external returns (uint256 id);

    /// @notice Whether `entry` is listed now.
    function isRiskDeviceListed(bytes32 entry) external view returns (bool);

    /// @notice Who listed `entry`, why and when; reverts `RiskList_NotListed` if not listed.
    function riskDevice(bytes32 entry) external view returns (RiskDevice memory);

    /// @notice The number of entries listed now.
    function riskDeviceCount() external view returns (uint256);
}
