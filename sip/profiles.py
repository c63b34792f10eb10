"""PBX quirk profiles: how each PBX's dialog-info departs from RFC 4235.

`[sip] pbx` in the configuration selects one profile by name; nothing is guessed from
User-Agent strings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class PbxProfile:
    """The quirks of one PBX family, as flags the tracker and the subscription client read."""

    name: str

    # A `full` document that lists dialogs may carry only the leg that changed, so
    # dialogs missing from it are kept. An empty `full` document still means idle.
    full_is_one_leg: bool = False

    # A call-id starting with `pickup-` is made up by the PBX and is not the call's
    # Call-ID, so it neither joins dialogs into one call nor matches other extensions.
    fake_call_ids: bool = False

    # `confirmed` also covers an outgoing call still ringing at the far end, so a call
    # first seen `confirmed` gets no answer time and its answer is inferred.
    outgoing_confirmed_at_once: bool = False

    # The one dialog id names the extension and is reused by every call, so a ringing
    # dialog whose caller changes is a new call: the PBX collapsed the first call's end
    # and the next call's ring into one document.
    dialog_per_extension: bool = False

    # The document reflects the extension's device state rather than SIP dialogs, so
    # `early` -> `terminated` cannot tell a caller hang-up from a pickup or a ring-group
    # answer elsewhere, nor `early` -> `confirmed` an answer from a new outgoing call.
    outcomes_inferred: bool = False

    # Dialog NOTIFYs that match no subscription of ours are read and answered 200,
    # instead of being refused with 481.
    reads_unsolicited_notify: bool = False

    # The `direction` attribute (which side sent the INVITE) was seen wrong, so it is
    # not read and a call's direction comes from its remote party alone.
    direction_unreliable: bool = False

    @property
    def quirks(self) -> tuple[str, ...]:
        """Name every behaviour in which this profile departs from RFC 4235."""
        names: list[str] = []
        for item in fields(self):
            if item.name != "name" and getattr(self, item.name):
                names.append(item.name)
        return tuple(names)


# Asterisk chan_pjsip builds dialog-info from device state: the dialog id is the
# extension, there is no call-id, and a ringing outgoing call is already `confirmed`.
# chan_sip sends `call-id="pickup-<subscription Call-ID>"`.
# NOTE: with `notify_early_inuse_ringing=yes` Asterisk reports a second call ringing on a
# busy extension as `early` on the same dialog id. The tracker reads that as a stale
# state and ignores it, so call waiting on Asterisk shows only the first call.
ASTERISK = PbxProfile(
    name="asterisk",
    fake_call_ids=True,
    dialog_per_extension=True,
    outgoing_confirmed_at_once=True,
    outcomes_inferred=True,
)

# FreeSWITCH mod_sofia sends one NOTIFY per channel leg and labels it `full`.
FREESWITCH = PbxProfile(name="freeswitch", full_is_one_leg=True)

# Kamailio pua_dialoginfo + presence_dialoginfo follow the RFC. Before 5.6.0 every
# forked branch shared one dialog id, so a cancelled branch could end an answered call;
# nothing in the document tells that apart.
KAMAILIO = PbxProfile(name="kamailio")

# NOTE: no 3CX dialog-info document has been seen, so this profile is the generic one
# until a 3CX document has been checked in a lab.
THREE_CX = PbxProfile(name="3cx")

# innovaphone sends partner-key NOTIFYs without a SUBSCRIBE, and its `direction` was
# seen inverted (`initiator` on the called extension).
INNOVAPHONE = PbxProfile(name="innovaphone", reads_unsolicited_notify=True, direction_unreliable=True)

# Any notifier that follows RFC 4235.
GENERIC = PbxProfile(name="generic")

PROFILES: dict[str, PbxProfile] = {
    profile.name: profile for profile in (ASTERISK, FREESWITCH, KAMAILIO, THREE_CX, INNOVAPHONE, GENERIC)
}
