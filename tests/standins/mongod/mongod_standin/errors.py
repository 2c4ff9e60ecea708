"""MongoDB error codes the stand-in answers with (names as in MongoDB's error_codes.yml)."""

CODE_NAMES = {
    2: "BadValue", 8: "UnknownError", 11: "UserNotFound", 13: "Unauthorized", 14: "TypeMismatch",
    18: "AuthenticationFailed", 23: "AlreadyInitialized", 26: "NamespaceNotFound",
    43: "CursorNotFound", 48: "NamespaceExists", 50: "MaxTimeMSExpired", 51003: "Location51003",
    59: "CommandNotFound", 64: "WriteConcernFailed", 74: "NodeNotFound", 76: "NoReplicationEnabled",
    93: "InvalidReplicaSetConfig", 94: "NotYetInitialized", 103: "NewReplicaSetConfigurationIncompatible",
    11000: "DuplicateKey", 10107: "NotWritablePrimary", 13435: "NotPrimaryNoSecondaryOk",
    189: "PrimarySteppedDown", 262: "ExceededTimeLimit", 6: "HostUnreachable", 89: "NetworkTimeout",
    125: "CommandFailed", 91: "ShutdownInProgress", 133: "FailedToSatisfyReadPreference",
    20: "IllegalOperation", 30: "InvalidPath", 31: "RoleNotFound", 9: "FailedToParse",
    66: "ImmutableField", 28: "PathNotViable", 112: "WriteConflict", 251: "NoSuchTransaction",
    40324: "Location40324", 15952: "Location15952", 95: "NotSecondary", 113: "ConfigurationInProgress",
    109: "ConfigurationInProgress", 119: "InvalidSyncSource", 124: "ElectionInProgress",
}

# errors after which a driver retries a retryable write, and MongoDB labels them as such
RETRYABLE = {10107, 13435, 189, 91, 6, 89, 262, 11600, 11602, 9001}


class CommandError(Exception):
    def __init__(self, code: int, errmsg: str, code_name: str | None = None, **extra):
        super().__init__(errmsg)
        self.code = code
        self.errmsg = errmsg
        self.code_name = code_name or CODE_NAMES.get(code, "UnknownError")
        self.extra = extra

    def to_doc(self) -> dict:
        d = {"ok": 0.0, "errmsg": self.errmsg, "code": self.code, "codeName": self.code_name}
        d.update(self.extra)
        return d
