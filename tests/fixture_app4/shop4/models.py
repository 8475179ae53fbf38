"""Argument classes the application passes to its tasks.

APScheduler 4's JSON and CBOR serializers store any object as (its "module:qualname", its
__getstate__()) and restore it with cls.__new__ + __setstate__, so Customer has both; the
pickle serializer pickles it as usual (a plain class: copyreg's __reduce_ex__).
"""


class Customer:
    def __init__(self, id, name, tags=()):
        self.id, self.name, self.tags = id, name, list(tags)

    def __getstate__(self):
        return {"id": self.id, "name": self.name, "tags": self.tags}

    def __setstate__(self, state):
        self.id, self.name, self.tags = state["id"], state["name"], list(state["tags"])

    def __eq__(self, other):
        return isinstance(other, Customer) and other.__getstate__() == self.__getstate__()

    def __repr__(self):
        return f"Customer({self.id!r}, {self.name!r}, {self.tags!r})"


class Point:
    """Pickles through __reduce__ with constructor arguments (pickle serializer only)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __reduce__(self):
        return (Point, (self.x, self.y))

    def __eq__(self, other):
        return isinstance(other, Point) and (other.x, other.y) == (self.x, self.y)

    def __repr__(self):
        return f"Point({self.x!r}, {self.y!r})"
