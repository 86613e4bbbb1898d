"""Tencent's own code, from PyPI, driven by tests/tencent.rs: UserSigs made by the official
TLSSigAPIv2 (tls-sig-api-v2), and an unmodified Tencent IM REST client library
(tencentcloud-sdk-python-im) pointed at a bullhorn admin listener.

  tim.py usersig SDKAPPID KEY IDENTIFIER EXPIRE [MADE_AT]
  tim.py client BASE_URL SDKAPPID KEY create GROUP_ID NAME
  tim.py client BASE_URL SDKAPPID KEY send GROUP_ID TEXT
  tim.py client BASE_URL SDKAPPID KEY online GROUP_ID
Each client call prints the server's JSON answer on one line.
"""
import json
import sys


def usersig(sdkappid, key, identifier, expire, made_at=None):
    import TLSSigAPIv2 as module

    if made_at is not None:
        # The library reads the clock itself; pin it to make an already expired UserSig.
        module.time.time = lambda: float(made_at)
    return module.TLSSigAPIv2(int(sdkappid), key).gen_sig(identifier, int(expire))


class GroupType(str):
    """The library's own check lists the current group types only (BChatRoom is older than
    it); this value passes that check and is still sent as "BChatRoom"."""

    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


def client(base, sdkappid, key, action, group_id, arg=None):
    from tencentcloud_im.tcim_client import GroupObj, MessageText, TCIMClient

    im = TCIMClient(int(sdkappid), key, "administrator", tencent_url=base + "/v4", expire_time=3600)
    if action == "create":
        answer = im.create_group(GroupObj("administrator", GroupType("BChatRoom"), arg, group_id=group_id))
    elif action == "send":
        answer = im.send_group_message(group_id, [MessageText(arg)], from_account="administrator")
    elif action == "online":
        answer = im.get_online_member_num(group_id)
    else:
        raise SystemExit(f"unknown action {action}")
    if answer is None:
        raise SystemExit("the library sent nothing (see its log)")
    print(json.dumps({"status": answer.status_code, "body": answer.json()}))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "usersig":
        print(usersig(*args))
    elif command == "client":
        client(*args)
    else:
        raise SystemExit(f"unknown command {command}")
