"""Query language subset: comparison of BSON values, filters, updates, projection, sort.

Enough for what a Node.js app does through the `mongodb` driver (equality, $in, ranges,
$exists, $and/$or, $regex, dotted paths; $set/$unset/$inc/$push/$addToSet/$pull...).
Anything else raises CommandError so the client sees a MongoDB-like error, not a wrong answer.
"""
from __future__ import annotations

import copy
import datetime
import re
import uuid

from bson.binary import Binary
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

from .errors import CommandError

MISSING = object()


# --- BSON comparison order (MinKey < null < numbers < string < object < array < binData
#     < ObjectId < bool < date < timestamp < regex < MaxKey) -------------------------------

def _type_rank(v):
    if v is None or v is MISSING:
        return 1
    if isinstance(v, bool):
        return 8
    if isinstance(v, (int, float, Int64)):
        return 2
    if isinstance(v, str):
        return 3
    if isinstance(v, dict):
        return 4
    if isinstance(v, list):
        return 5
    if isinstance(v, (bytes, Binary, uuid.UUID)):
        return 6
    if isinstance(v, ObjectId):
        return 7
    if isinstance(v, datetime.datetime):
        return 9
    if isinstance(v, Timestamp):
        return 10
    if isinstance(v, (Regex, re.Pattern)):
        return 11
    return 12


def compare(a, b) -> int:
    ra, rb = _type_rank(a), _type_rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 1:
        return 0
    if ra == 4:
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            if ka != kb:
                return -1 if ka < kb else 1
            c = compare(va, vb)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 5:
        for va, vb in zip(a, b):
            c = compare(va, vb)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 6:
        a, b = _bin(a), _bin(b)
    if ra == 7:
        a, b = a.binary, b.binary
    if ra == 9:
        a, b = _naive(a), _naive(b)
    if ra == 10:
        a, b = (a.time, a.inc), (b.time, b.inc)
    if ra == 11:
        a, b = str(a.pattern), str(b.pattern)
    if ra == 12:
        a, b = repr(a), repr(b)
    return (a > b) - (a < b)


def _bin(v):
    if isinstance(v, uuid.UUID):
        return v.bytes
    return bytes(v)


def _naive(d: datetime.datetime):
    if d.tzinfo is not None:
        return d.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return d


def equal(a, b) -> bool:
    return _type_rank(a) == _type_rank(b) and compare(a, b) == 0


# --- paths -------------------------------------------------------------------------------

def get_path(doc, path: str):
    """Values reached by a dotted path; arrays are traversed (MongoDB's implicit $elemMatch)."""
    parts = path.split(".")
    out: list = []

    def walk(v, i):
        if i == len(parts):
            out.append(v)
            return
        p = parts[i]
        if isinstance(v, dict):
            walk(v.get(p, MISSING), i + 1) if p in v else walk(MISSING, len(parts))
        elif isinstance(v, list):
            if p.isdigit() and int(p) < len(v):
                walk(v[int(p)], i + 1)
            for e in v:
                if isinstance(e, dict):
                    walk(e, i)
            if not v:
                out.append(MISSING)
        else:
            out.append(MISSING)

    walk(doc, 0)
    return out or [MISSING]


def _candidates(values):
    """Each value and, for arrays, their elements (how a filter sees an array field)."""
    for v in values:
        yield v
        if isinstance(v, list):
            yield from v


# --- matching ----------------------------------------------------------------------------

def matches(doc, flt) -> bool:
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            if not all(matches(doc, f) for f in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, f) for f in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, f) for f in cond):
                return False
        elif key == "$comment":
            continue
        elif key == "$expr" or key == "$where" or key == "$text":
            raise CommandError(2, f"unknown top level operator: {key} (not imitated by the stand-in)", "BadValue")
        elif key.startswith("$"):
            raise CommandError(2, f"unknown top level operator: {key}", "BadValue")
        else:
            if not _match_field(get_path(doc, key), cond):
                return False
    return True


def _is_operator_doc(cond) -> bool:
    return isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond)


def _match_field(values, cond) -> bool:
    if _is_operator_doc(cond):
        opts = cond.get("$options", "")
        for op, arg in cond.items():
            if op == "$options":
                continue
            if not _match_op(values, op, arg, opts):
                return False
        return True
    if isinstance(cond, (Regex, re.Pattern)):
        return _match_op(values, "$regex", cond, "")
    return any(equal(v, cond) for v in _candidates(values)) or (
        cond is None and all(v is MISSING or v is None for v in values))


def _regex(arg, opts):
    if isinstance(arg, Regex):
        flags = arg.flags if isinstance(arg.flags, int) else 0
        pat = arg.pattern
        arg = re.compile(pat, flags)
    if isinstance(arg, str):
        fl = 0
        for o in opts or "":
            fl |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}.get(o, 0)
        arg = re.compile(arg, fl)
    elif opts:
        fl = arg.flags
        for o in opts:
            fl |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}.get(o, 0)
        arg = re.compile(arg.pattern, fl)
    return arg


def _match_op(values, op, arg, opts) -> bool:
    cands = list(_candidates(values))
    if op == "$eq":
        return _match_field(values, arg) if not isinstance(arg, dict) else any(equal(v, arg) for v in cands)
    if op == "$ne":
        return not _match_field(values, arg if not isinstance(arg, dict) else {"$eq": arg})
    if op in ("$gt", "$gte", "$lt", "$lte"):
        for v in cands:
            if v is MISSING or _type_rank(v) != _type_rank(arg):
                continue
            c = compare(v, arg)
            if (op == "$gt" and c > 0) or (op == "$gte" and c >= 0) or (op == "$lt" and c < 0) or (op == "$lte" and c <= 0):
                return True
        return False
    if op == "$in":
        return any(_match_field(values, a) for a in arg)
    if op == "$nin":
        return not any(_match_field(values, a) for a in arg)
    if op == "$exists":
        present = any(v is not MISSING for v in values)
        return present if arg else not present
    if op == "$regex":
        rx = _regex(arg, opts)
        return any(isinstance(v, str) and rx.search(v) for v in cands)
    if op == "$not":
        return not _match_field(values, arg)
    if op == "$size":
        return any(isinstance(v, list) and len(v) == arg for v in values)
    if op == "$all":
        return all(_match_field(values, a) for a in arg)
    if op == "$elemMatch":
        for v in values:
            if isinstance(v, list):
                for e in v:
                    if _is_operator_doc(arg):
                        if _match_field([e], arg):
                            return True
                    elif isinstance(e, dict) and matches(e, arg):
                        return True
        return False
    if op == "$type":
        names = arg if isinstance(arg, list) else [arg]
        return any(_type_name(v) in names or _type_num(v) in names for v in values if v is not MISSING)
    if op == "$mod":
        d, r = arg
        return any(isinstance(v, (int, float)) and not isinstance(v, bool) and v % d == r for v in cands)
    raise CommandError(2, f"unknown operator: {op}", "BadValue")


def _type_name(v):
    return {1: "null", 2: "number", 3: "string", 4: "object", 5: "array", 6: "binData", 7: "objectId",
            8: "bool", 9: "date", 10: "timestamp", 11: "regex"}.get(_type_rank(v), "unknown")


def _type_num(v):
    return {1: 10, 3: 2, 4: 3, 5: 4, 6: 5, 7: 7, 8: 8, 9: 9, 10: 17, 11: 11}.get(_type_rank(v), 1)


# --- updates -----------------------------------------------------------------------------

def _parent(doc, path, create=True):
    parts = path.split(".")
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, list) and p.isdigit():
            i = int(p)
            while create and len(cur) <= i:
                cur.append(None)
            if i >= len(cur):
                return None, None
            if cur[i] is None and create:
                cur[i] = {}
            cur = cur[i]
        elif isinstance(cur, dict):
            if p not in cur:
                if not create:
                    return None, None
                cur[p] = {}
            cur = cur[p]
        else:
            if not create:
                return None, None
            raise CommandError(28, f"Cannot create field '{p}' in element", "PathNotViable")
    return cur, parts[-1]


def _set(doc, path, value):
    parent, last = _parent(doc, path)
    if isinstance(parent, list) and last.isdigit():
        i = int(last)
        while len(parent) <= i:
            parent.append(None)
        parent[i] = value
    else:
        parent[last] = value


def _get1(doc, path):
    parent, last = _parent(doc, path, create=False)
    if parent is None:
        return MISSING
    if isinstance(parent, list) and last.isdigit():
        i = int(last)
        return parent[i] if i < len(parent) else MISSING
    if isinstance(parent, dict):
        return parent.get(last, MISSING)
    return MISSING


def _unset(doc, path):
    parent, last = _parent(doc, path, create=False)
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent[int(last)] = None


def is_update_doc(u) -> bool:
    return isinstance(u, dict) and bool(u) and next(iter(u)).startswith("$")


def apply_update(doc: dict, upd, is_insert=False) -> dict:
    """Return the new document (a copy); `upd` is an operator doc or a replacement."""
    if isinstance(upd, list):
        raise CommandError(2, "pipeline-style updates are not imitated by the stand-in", "BadValue")
    if not is_update_doc(upd):
        new = {"_id": doc["_id"]} if "_id" in doc else {}
        for k, v in upd.items():
            if k != "_id":
                new[k] = copy.deepcopy(v)
        return new
    new = copy.deepcopy(doc)
    for op, fields in upd.items():
        for path, arg in fields.items():
            if path == "_id" and op != "$setOnInsert" and not (op == "$set" and equal(doc.get("_id"), arg)):
                raise CommandError(66, "Performing an update on the path '_id' would modify the immutable field '_id'", "ImmutableField")
            if op == "$set":
                _set(new, path, copy.deepcopy(arg))
            elif op == "$setOnInsert":
                if is_insert:
                    _set(new, path, copy.deepcopy(arg))
            elif op == "$unset":
                _unset(new, path)
            elif op == "$inc" or op == "$mul":
                cur = _get1(new, path)
                base = 0 if cur is MISSING or cur is None else cur
                if not isinstance(base, (int, float)):
                    raise CommandError(14, f"Cannot apply {op} to a value of non-numeric type", "TypeMismatch")
                _set(new, path, base + arg if op == "$inc" else base * arg)
            elif op in ("$min", "$max"):
                cur = _get1(new, path)
                if cur is MISSING or (compare(arg, cur) < 0 if op == "$min" else compare(arg, cur) > 0):
                    _set(new, path, copy.deepcopy(arg))
            elif op == "$currentDate":
                _set(new, path, datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
            elif op == "$rename":
                cur = _get1(new, path)
                if cur is not MISSING:
                    _unset(new, path)
                    _set(new, arg, cur)
            elif op in ("$push", "$addToSet"):
                cur = _get1(new, path)
                if cur is MISSING:
                    cur = []
                    _set(new, path, cur)
                if not isinstance(cur, list):
                    raise CommandError(2, f"The field '{path}' must be an array", "BadValue")
                items = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
                for it in items:
                    if op == "$push" or not any(equal(it, e) for e in cur):
                        cur.append(copy.deepcopy(it))
                if isinstance(arg, dict) and "$slice" in arg:
                    s = arg["$slice"]
                    cur[:] = cur[s:] if s < 0 else cur[:s]
            elif op in ("$pull", "$pullAll"):
                cur = _get1(new, path)
                if isinstance(cur, list):
                    if op == "$pullAll":
                        cur[:] = [e for e in cur if not any(equal(e, a) for a in arg)]
                    elif isinstance(arg, dict) and not _is_operator_doc(arg):
                        cur[:] = [e for e in cur if not (isinstance(e, dict) and matches(e, arg))]
                    else:
                        cur[:] = [e for e in cur if not _match_field([e], arg)]
            elif op == "$pop":
                cur = _get1(new, path)
                if isinstance(cur, list) and cur:
                    cur.pop(0 if arg == -1 else -1)
            else:
                raise CommandError(9, f"Unknown modifier: {op}. Expected a valid update modifier or pipeline-style update specified as an array", "FailedToParse")
    return new


def upsert_seed(flt) -> dict:
    """Equality fields of a filter become the new document of an upsert."""
    doc: dict = {}
    for k, v in (flt or {}).items():
        if k.startswith("$"):
            if k == "$and":
                for f in v:
                    for kk, vv in upsert_seed(f).items():
                        _set(doc, kk, vv)
            continue
        if _is_operator_doc(v):
            if "$eq" in v:
                _set(doc, k, copy.deepcopy(v["$eq"]))
            continue
        if isinstance(v, (Regex, re.Pattern)):
            continue
        _set(doc, k, copy.deepcopy(v))
    return doc


# --- projection and sort -----------------------------------------------------------------

def project(doc, proj):
    if not proj:
        return doc
    incl = {k: v for k, v in proj.items() if k != "_id"}
    truthy = [k for k, v in incl.items() if (v if not isinstance(v, dict) else True)]
    falsy = [k for k, v in incl.items() if not isinstance(v, dict) and not v]
    keep_id = proj.get("_id", 1)
    if truthy:
        out = {}
        if keep_id and "_id" in doc:
            out["_id"] = doc["_id"]
        for k in truthy:
            v = _get1(doc, k)
            if isinstance(incl[k], dict) and "$slice" in incl[k] and isinstance(v, list):
                s = incl[k]["$slice"]
                v = v[s:] if isinstance(s, int) and s < 0 else v[:s] if isinstance(s, int) else v[s[0]:s[0] + s[1]]
            if v is not MISSING:
                _set(out, k, copy.deepcopy(v))
        return out
    out = copy.deepcopy(doc)
    for k in falsy:
        _unset(out, k)
    if not keep_id:
        out.pop("_id", None)
    return out


class _Key:
    __slots__ = ("vals", "dirs")

    def __init__(self, vals, dirs):
        self.vals, self.dirs = vals, dirs

    def __lt__(self, other):
        for a, b, d in zip(self.vals, other.vals, self.dirs):
            c = compare(a, b)
            if c:
                return c * d < 0
        return False


def sort_docs(docs, spec):
    if not spec:
        return docs
    keys = list(spec.items())

    def key(doc):
        vals = []
        for k, d in keys:
            vs = [v for v in _candidates(get_path(doc, k)) if not isinstance(v, list)] or [None]
            vs = [None if v is MISSING else v for v in vs]
            # arrays sort by their smallest element ascending, largest descending
            best = vs[0]
            for v in vs[1:]:
                if (compare(v, best) < 0) == (d >= 0):
                    best = v
            vals.append(best)
        return _Key(vals, [1 if (d if not isinstance(d, dict) else 1) >= 0 else -1 for _, d in keys])

    return sorted(docs, key=key)


# --- aggregation (the subset drivers use for countDocuments and simple pipelines) ----------

def aggregate(docs, pipeline):
    for stage in pipeline:
        (name, arg), = stage.items()
        if name == "$match":
            docs = [d for d in docs if matches(d, arg)]
        elif name == "$sort":
            docs = sort_docs(docs, arg)
        elif name == "$skip":
            docs = docs[int(arg):]
        elif name == "$limit":
            docs = docs[:int(arg)]
        elif name == "$project":
            docs = [project(d, arg) for d in docs]
        elif name == "$count":
            docs = [{arg: len(docs)}] if docs else []
        elif name == "$group":
            docs = _group(docs, arg)
        elif name == "$unwind":
            path = (arg if isinstance(arg, str) else arg["path"]).lstrip("$")
            out = []
            for d in docs:
                v = _get1(d, path)
                if isinstance(v, list):
                    for e in v:
                        nd = copy.deepcopy(d)
                        _set(nd, path, e)
                        out.append(nd)
                elif v is not MISSING and v is not None:
                    out.append(d)
            docs = out
        else:
            raise CommandError(40324, f"Unrecognized pipeline stage name: '{name}' (not imitated by the stand-in)", "Location40324")
    return docs


def _expr(doc, e):
    if isinstance(e, str) and e.startswith("$"):
        v = _get1(doc, e[1:])
        return None if v is MISSING else v
    if isinstance(e, dict) and not e:
        return e
    if isinstance(e, dict) and all(not k.startswith("$") for k in e):
        return {k: _expr(doc, v) for k, v in e.items()}
    return e


def _group(docs, spec):
    groups: dict = {}
    order = []
    for d in docs:
        gid = _expr(d, spec["_id"])
        key = repr(gid)
        if key not in groups:
            groups[key] = {"_id": gid}
            order.append(key)
            for f, acc in spec.items():
                if f != "_id":
                    (op, _), = acc.items()
                    groups[key][f] = 0 if op == "$sum" else [] if op in ("$push", "$addToSet") else None
        g = groups[key]
        for f, acc in spec.items():
            if f == "_id":
                continue
            (op, arg), = acc.items()
            v = _expr(d, arg)
            if op == "$sum":
                g[f] += v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0
            elif op == "$push":
                g[f].append(v)
            elif op == "$addToSet":
                if not any(equal(v, x) for x in g[f]):
                    g[f].append(v)
            elif op == "$first":
                if g[f] is None:
                    g[f] = v
            elif op == "$last":
                g[f] = v
            elif op == "$max":
                if g[f] is None or compare(v, g[f]) > 0:
                    g[f] = v
            elif op == "$min":
                if g[f] is None or compare(v, g[f]) < 0:
                    g[f] = v
            else:
                raise CommandError(15952, f"unknown group operator '{op}'", "Location15952")
    return [groups[k] for k in order]
