from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrchestratorRequest(_message.Message):
    __slots__ = ("address", "sig", "capabilities", "ignoreCapacityCheck")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    IGNORECAPACITYCHECK_FIELD_NUMBER: _ClassVar[int]
    address: bytes
    sig: bytes
    capabilities: Capabilities
    ignoreCapacityCheck: bool
    def __init__(self, address: _Optional[bytes] = ..., sig: _Optional[bytes] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., ignoreCapacityCheck: _Optional[bool] = ...) -> None: ...

class OrchestratorInfo(_message.Message):
    __slots__ = ("transcoder", "ticket_params", "price_info", "address", "capabilities", "auth_token", "hardware", "storage", "capabilities_prices", "nodes")
    TRANSCODER_FIELD_NUMBER: _ClassVar[int]
    TICKET_PARAMS_FIELD_NUMBER: _ClassVar[int]
    PRICE_INFO_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_PRICES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    transcoder: str
    ticket_params: TicketParams
    price_info: PriceInfo
    address: bytes
    capabilities: Capabilities
    auth_token: AuthToken
    hardware: _containers.RepeatedCompositeFieldContainer[HardwareInformation]
    storage: _containers.RepeatedCompositeFieldContainer[OSInfo]
    capabilities_prices: _containers.RepeatedCompositeFieldContainer[PriceInfo]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, transcoder: _Optional[str] = ..., ticket_params: _Optional[_Union[TicketParams, _Mapping]] = ..., price_info: _Optional[_Union[PriceInfo, _Mapping]] = ..., address: _Optional[bytes] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., auth_token: _Optional[_Union[AuthToken, _Mapping]] = ..., hardware: _Optional[_Iterable[_Union[HardwareInformation, _Mapping]]] = ..., storage: _Optional[_Iterable[_Union[OSInfo, _Mapping]]] = ..., capabilities_prices: _Optional[_Iterable[_Union[PriceInfo, _Mapping]]] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class PriceInfo(_message.Message):
    __slots__ = ("pricePerUnit", "pixelsPerUnit", "capability", "constraint")
    PRICEPERUNIT_FIELD_NUMBER: _ClassVar[int]
    PIXELSPERUNIT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    pricePerUnit: int
    pixelsPerUnit: int
    capability: int
    constraint: str
    def __init__(self, pricePerUnit: _Optional[int] = ..., pixelsPerUnit: _Optional[int] = ..., capability: _Optional[int] = ..., constraint: _Optional[str] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("bitstring", "mandatories", "capacities", "version", "constraints")
    class CapacitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class Constraints(_message.Message):
        __slots__ = ("minVersion", "PerCapability")
        class PerCapabilityEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: int
            value: Capabilities.CapabilityConstraints
            def __init__(self, key: _Optional[int] = ..., value: _Optional[_Union[Capabilities.CapabilityConstraints, _Mapping]] = ...) -> None: ...
        MINVERSION_FIELD_NUMBER: _ClassVar[int]
        PERCAPABILITY_FIELD_NUMBER: _ClassVar[int]
        minVersion: str
        PerCapability: _containers.MessageMap[int, Capabilities.CapabilityConstraints]
        def __init__(self, minVersion: _Optional[str] = ..., PerCapability: _Optional[_Mapping[int, Capabilities.CapabilityConstraints]] = ...) -> None: ...
    class CapabilityConstraints(_message.Message):
        __slots__ = ("models",)
        class ModelConstraint(_message.Message):
            __slots__ = ("warm", "capacity", "runnerVersion", "capacityInUse")
            WARM_FIELD_NUMBER: _ClassVar[int]
            CAPACITY_FIELD_NUMBER: _ClassVar[int]
            RUNNERVERSION_FIELD_NUMBER: _ClassVar[int]
            CAPACITYINUSE_FIELD_NUMBER: _ClassVar[int]
            warm: bool
            capacity: int
            runnerVersion: str
            capacityInUse: int
            def __init__(self, warm: _Optional[bool] = ..., capacity: _Optional[int] = ..., runnerVersion: _Optional[str] = ..., capacityInUse: _Optional[int] = ...) -> None: ...
        class ModelsEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: Capabilities.CapabilityConstraints.ModelConstraint
            def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Capabilities.CapabilityConstraints.ModelConstraint, _Mapping]] = ...) -> None: ...
        MODELS_FIELD_NUMBER: _ClassVar[int]
        models: _containers.MessageMap[str, Capabilities.CapabilityConstraints.ModelConstraint]
        def __init__(self, models: _Optional[_Mapping[str, Capabilities.CapabilityConstraints.ModelConstraint]] = ...) -> None: ...
    BITSTRING_FIELD_NUMBER: _ClassVar[int]
    MANDATORIES_FIELD_NUMBER: _ClassVar[int]
    CAPACITIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    bitstring: _containers.RepeatedScalarFieldContainer[int]
    mandatories: _containers.RepeatedScalarFieldContainer[int]
    capacities: _containers.ScalarMap[int, int]
    version: str
    constraints: Capabilities.Constraints
    def __init__(self, bitstring: _Optional[_Iterable[int]] = ..., mandatories: _Optional[_Iterable[int]] = ..., capacities: _Optional[_Mapping[int, int]] = ..., version: _Optional[str] = ..., constraints: _Optional[_Union[Capabilities.Constraints, _Mapping]] = ...) -> None: ...

class AuthToken(_message.Message):
    __slots__ = ("token", "session_id", "expiration")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_FIELD_NUMBER: _ClassVar[int]
    token: bytes
    session_id: str
    expiration: int
    def __init__(self, token: _Optional[bytes] = ..., session_id: _Optional[str] = ..., expiration: _Optional[int] = ...) -> None: ...

class TicketParams(_message.Message):
    __slots__ = ("recipient", "face_value", "win_prob", "recipient_rand_hash", "seed", "expiration_block", "expiration_params")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    FACE_VALUE_FIELD_NUMBER: _ClassVar[int]
    WIN_PROB_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_RAND_HASH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_BLOCK_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    recipient: bytes
    face_value: bytes
    win_prob: bytes
    recipient_rand_hash: bytes
    seed: bytes
    expiration_block: bytes
    expiration_params: TicketExpirationParams
    def __init__(self, recipient: _Optional[bytes] = ..., face_value: _Optional[bytes] = ..., win_prob: _Optional[bytes] = ..., recipient_rand_hash: _Optional[bytes] = ..., seed: _Optional[bytes] = ..., expiration_block: _Optional[bytes] = ..., expiration_params: _Optional[_Union[TicketExpirationParams, _Mapping]] = ...) -> None: ...

class TicketSenderParams(_message.Message):
    __slots__ = ("sender_nonce", "sig")
    SENDER_NONCE_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    sender_nonce: int
    sig: bytes
    def __init__(self, sender_nonce: _Optional[int] = ..., sig: _Optional[bytes] = ...) -> None: ...

class TicketExpirationParams(_message.Message):
    __slots__ = ("creation_round", "creation_round_block_hash")
    CREATION_ROUND_FIELD_NUMBER: _ClassVar[int]
    CREATION_ROUND_BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    creation_round: int
    creation_round_block_hash: bytes
    def __init__(self, creation_round: _Optional[int] = ..., creation_round_block_hash: _Optional[bytes] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("ticket_params", "sender", "expiration_params", "ticket_sender_params", "expected_price")
    TICKET_PARAMS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    EXPIRATION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TICKET_SENDER_PARAMS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PRICE_FIELD_NUMBER: _ClassVar[int]
    ticket_params: TicketParams
    sender: bytes
    expiration_params: TicketExpirationParams
    ticket_sender_params: _containers.RepeatedCompositeFieldContainer[TicketSenderParams]
    expected_price: PriceInfo
    def __init__(self, ticket_params: _Optional[_Union[TicketParams, _Mapping]] = ..., sender: _Optional[bytes] = ..., expiration_params: _Optional[_Union[TicketExpirationParams, _Mapping]] = ..., ticket_sender_params: _Optional[_Iterable[_Union[TicketSenderParams, _Mapping]]] = ..., expected_price: _Optional[_Union[PriceInfo, _Mapping]] = ...) -> None: ...

class PaymentResult(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: OrchestratorInfo
    def __init__(self, info: _Optional[_Union[OrchestratorInfo, _Mapping]] = ...) -> None: ...

class SegData(_message.Message):
    __slots__ = ("manifestId", "seq", "hash", "profiles", "sig", "duration", "capabilities", "auth_token", "calc_perceptual_hash", "storage")
    MANIFESTID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CALC_PERCEPTUAL_HASH_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    manifestId: bytes
    seq: int
    hash: bytes
    profiles: bytes
    sig: bytes
    duration: int
    capabilities: Capabilities
    auth_token: AuthToken
    calc_perceptual_hash: bool
    storage: _containers.RepeatedCompositeFieldContainer[OSInfo]
    def __init__(self, manifestId: _Optional[bytes] = ..., seq: _Optional[int] = ..., hash: _Optional[bytes] = ..., profiles: _Optional[bytes] = ..., sig: _Optional[bytes] = ..., duration: _Optional[int] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., auth_token: _Optional[_Union[AuthToken, _Mapping]] = ..., calc_perceptual_hash: _Optional[bool] = ..., storage: _Optional[_Iterable[_Union[OSInfo, _Mapping]]] = ...) -> None: ...

class OSInfo(_message.Message):
    __slots__ = ("storageType", "s3info")
    class StorageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DIRECT: _ClassVar[OSInfo.StorageType]
        S3: _ClassVar[OSInfo.StorageType]
        GOOGLE: _ClassVar[OSInfo.StorageType]
    DIRECT: OSInfo.StorageType
    S3: OSInfo.StorageType
    GOOGLE: OSInfo.StorageType
    STORAGETYPE_FIELD_NUMBER: _ClassVar[int]
    S3INFO_FIELD_NUMBER: _ClassVar[int]
    storageType: OSInfo.StorageType
    s3info: S3OSInfo
    def __init__(self, storageType: _Optional[_Union[OSInfo.StorageType, str]] = ..., s3info: _Optional[_Union[S3OSInfo, _Mapping]] = ...) -> None: ...

class S3OSInfo(_message.Message):
    __slots__ = ("host", "key", "policy", "signature", "credential", "xAmzDate")
    HOST_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    XAMZDATE_FIELD_NUMBER: _ClassVar[int]
    host: str
    key: str
    policy: str
    signature: str
    credential: str
    xAmzDate: str
    def __init__(self, host: _Optional[str] = ..., key: _Optional[str] = ..., policy: _Optional[str] = ..., signature: _Optional[str] = ..., credential: _Optional[str] = ..., xAmzDate: _Optional[str] = ...) -> None: ...

class HardwareInformation(_message.Message):
    __slots__ = ("pipeline", "model_id", "gpu_info")
    class GpuInfoEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: GPUComputeInfo
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[GPUComputeInfo, _Mapping]] = ...) -> None: ...
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_INFO_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    model_id: str
    gpu_info: _containers.MessageMap[str, GPUComputeInfo]
    def __init__(self, pipeline: _Optional[str] = ..., model_id: _Optional[str] = ..., gpu_info: _Optional[_Mapping[str, GPUComputeInfo]] = ...) -> None: ...

class GPUComputeInfo(_message.Message):
    __slots__ = ("id", "name", "major", "minor", "memory_free", "memory_total")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    MINOR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    major: int
    minor: int
    memory_free: int
    memory_total: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., major: _Optional[int] = ..., minor: _Optional[int] = ..., memory_free: _Optional[int] = ..., memory_total: _Optional[int] = ...) -> None: ...

class RegisterAIWorkerRequest(_message.Message):
    __slots__ = ("secret", "capabilities", "hardware")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    secret: str
    capabilities: Capabilities
    hardware: _containers.RepeatedCompositeFieldContainer[HardwareInformation]
    def __init__(self, secret: _Optional[str] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., hardware: _Optional[_Iterable[_Union[HardwareInformation, _Mapping]]] = ...) -> None: ...

class AIJobData(_message.Message):
    __slots__ = ("pipeline", "requestData")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    REQUESTDATA_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    requestData: bytes
    def __init__(self, pipeline: _Optional[str] = ..., requestData: _Optional[bytes] = ...) -> None: ...

class NotifyAIJob(_message.Message):
    __slots__ = ("AIJobData", "taskId")
    AIJOBDATA_FIELD_NUMBER: _ClassVar[int]
    TASKID_FIELD_NUMBER: _ClassVar[int]
    AIJobData: AIJobData
    taskId: int
    def __init__(self, AIJobData: _Optional[_Union[AIJobData, _Mapping]] = ..., taskId: _Optional[int] = ...) -> None: ...
