"""The inspector's limits, each named once.

A message is hostile input: it may carry a million URLs, a thousand nested parts or a zip that
expands to terabytes. Each limit bounds the inspector's time and memory; whatever a limit cuts is
reported as a :class:`~feedgate.mail.model.Skipped`, never dropped silently, so a policy (or an
admin) can treat "not fully inspected" as a verdict of its own.
"""

from __future__ import annotations

from typing import Final

MiB: Final = 1024 * 1024

#: Distinct URLs offered per message; a newsletter has a few hundred, a URL flood many more.
MAX_URLS: Final = 10_000
#: Distinct candidates normalised per message (most prose "URLs" that are none cost a try).
MAX_URL_CANDIDATES: Final = 2 * MAX_URLS
#: URLs taken from inside one URL (a redirector's ``?u=http://...``, chained).
MAX_EMBEDDED_URLS: Final = 32
#: Longest URL taken (characters); longer candidates are reported, not normalised.
MAX_URL_CHARS: Final = 8192

#: MIME leaves (bodies and attachments) looked at per message, nested messages included.
MAX_PARTS: Final = 1000
#: Levels of multipart / message/rfc822 nesting followed.
MAX_NESTING: Final = 20

#: Largest part decoded (its encoded size, as it sits in the message).
MAX_PART_BYTES: Final = 64 * MiB
#: Decoded bytes of one text part searched for URLs; the rest of the part is skipped.
MAX_TEXT_SCAN_BYTES: Final = 8 * MiB
#: Decoded bytes decoded and hashed per message, all parts and archive members together.
MAX_SCAN_BYTES: Final = 256 * MiB

#: Longest header value read (characters, after unfolding); a longer one is cut and reported.
MAX_HEADER_CHARS: Final = 64 * 1024
#: Addresses taken from each of From, Sender, Reply-To (all their occurrences together).
MAX_ADDRESSES: Final = 100
#: Longest subject or Message-ID kept on the :class:`~feedgate.mail.model.Inspection`.
MAX_SUBJECT_CHARS: Final = 998

#: Zip archives within archives followed (an archive in a message is depth 1).
MAX_ARCHIVE_DEPTH: Final = 3
#: Members looked at per archive.
MAX_ARCHIVE_MEMBERS: Final = 1000
#: Largest member expanded (its declared and its actual size).
MAX_MEMBER_BYTES: Final = 64 * MiB
#: Largest compression ratio believed for a member over :data:`BOMB_MIN_BYTES`; a higher one is
#: a zip bomb and is not expanded.
MAX_COMPRESSION_RATIO: Final = 200
#: Below this expanded size no ratio is suspicious (a tiny file of zeros compresses 1000:1).
BOMB_MIN_BYTES: Final = 1 * MiB
#: Chunk in which members are decompressed and hashed (never a whole member at once).
ARCHIVE_CHUNK_BYTES: Final = 256 * 1024

#: The largest message feedgate scans at all: a file or an SMTP message past it is refused
#: before it is parsed (the stdlib parser holds several copies of a message while it works).
MAX_MESSAGE_BYTES: Final = 64 * MiB
