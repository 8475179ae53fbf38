from dataclasses import dataclass, field


@dataclass
class Customer:
    id: int
    name: str
    tags: list = field(default_factory=list)


class Mailer:
    """A job whose function is a bound method: APScheduler pickles the instance into args."""

    def __init__(self, sender):
        self.sender = sender

    def __eq__(self, other):
        return isinstance(other, Mailer) and other.sender == self.sender

    def send_digest(self, customer):
        return f"digest for {customer.name} from {self.sender}"


class Point:
    """An argument class that pickles through __reduce__ with constructor arguments."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __reduce__(self):
        return (Point, (self.x, self.y))

    def __eq__(self, other):
        return isinstance(other, Point) and (other.x, other.y) == (self.x, self.y)
