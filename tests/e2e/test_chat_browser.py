"""The chat example in headless Chromium: two people, presence, offline and back, server gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import e2e_support
from e2e_support import Server
from playwright.sync_api import expect

browser = e2e_support.browser
new_page = e2e_support.new_page
server = e2e_support.server

GRACE = "20"


def join(new_page: Callable[..., Any], url: str, name: str, room: str = "lobby") -> Any:
    page = new_page()
    page.goto(f"{url}/r/{room}")
    page.fill("#name", name)
    page.click("#name-dialog button")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    return page


def say(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def texts(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("li.msg .text").all_inner_texts()]


def test_two_people_see_each_others_messages_and_presence(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    chat = server("examples/chat/app.py", "--grace", GRACE)
    ada = join(new_page, chat.url, "Ada")
    bob = join(new_page, chat.url, "Bob")

    for page in (ada, bob):
        expect(page.locator('li.person[data-state="online"]')).to_have_count(2)
        expect(page.locator("li.person[data-name='Ada']")).to_be_visible()
        expect(page.locator("li.person[data-name='Bob']")).to_be_visible()

    say(ada, "hello Bob")
    expect(bob.locator("li.msg .text")).to_have_text(["hello Bob"])
    say(bob, "hi Ada")
    for page in (ada, bob):
        expect(page.locator("li.msg .text")).to_have_text(["hello Bob", "hi Ada"])
    expect(ada.locator("li.msg.mine .text")).to_have_text(["hello Bob"])
    expect(bob.locator("li.msg.mine .text")).to_have_text(["hi Ada"])
    # Ada saw Bob join; Bob got the history with Ada's arrival in it.
    expect(ada.locator("li.notice")).to_contain_text(["Ada joined", "Bob joined"])
    expect(bob.locator("li.notice").first).to_contain_text("Ada joined")

    # Another room is another conversation.
    cy = join(new_page, chat.url, "Cy", room="other")
    expect(cy.locator("li.msg")).to_have_count(0)
    expect(cy.locator("li.person")).to_have_count(1)


def test_offline_inside_grace_comes_back_with_every_message_in_order_once(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    chat = server("examples/chat/app.py", "--grace", GRACE)
    ada = join(new_page, chat.url, "Ada")
    bob = join(new_page, chat.url, "Bob")
    say(ada, "before")
    expect(bob.locator("li.msg .text")).to_have_text(["before"])
    bob_id = bob.evaluate("window.chat.me")

    bob.context.set_offline(True)
    expect(bob.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(bob.locator("#banner")).to_be_visible()
    expect(ada.locator(f"li.person[data-id='{bob_id}']")).to_have_attribute("data-state", "away")

    sent = [f"while away {i}" for i in range(1, 6)]
    for text in sent:
        say(ada, text)
    expect(ada.locator("li.msg .text")).to_have_text(["before", *sent])
    expect(bob.locator("li.msg")).to_have_count(1)  # really cut off

    bob.context.set_offline(False)
    expect(bob.locator("#conn")).to_have_attribute("data-state", "open")
    expect(bob.locator("li.msg .text")).to_have_text(["before", *sent])
    expect(ada.locator(f"li.person[data-id='{bob_id}']")).to_have_attribute("data-state", "online")
    # The same participant came back: no second "Bob joined", no "Bob left".
    expect(ada.locator("li.notice")).to_have_count(2)

    # A reload inside the grace period is the same participant too, and shows each message once.
    say(ada, "before reload")
    bob.reload()
    expect(bob.locator("#conn")).to_have_attribute("data-state", "open")
    say(ada, "after reload")
    expected = ["before", *sent, "before reload", "after reload"]
    expect(bob.locator("li.msg .text")).to_have_text(expected)
    assert bob.evaluate("window.chat.me") == bob_id
    expect(ada.locator("li.person")).to_have_count(2)
    expect(ada.locator("li.notice")).to_have_count(2)
    seqs = bob.locator("li[data-seq]").evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert seqs == sorted(set(seqs)), seqs


def test_a_gap_the_server_could_not_fill_is_shown_and_caught_up_from_the_history(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    # 4 kept: fewer than the 6 said while Bob is away, and room for the chat's own burst on his
    # return (hello, presence, the sync answer) before his first ack can come back. With 3 the
    # burst itself could overflow again, now and then, on every reconnect.
    chat = server("examples/chat/app.py", "--grace", GRACE, "--queued", "4")
    ada = join(new_page, chat.url, "Ada")
    bob = join(new_page, chat.url, "Bob")
    assert bob.evaluate("window.chat.conn.numbered") is True  # resume without loss
    say(ada, "before")
    expect(bob.locator("li.msg .text")).to_have_text(["before"])
    bob_id = bob.evaluate("window.chat.me")

    bob.context.set_offline(True)
    expect(bob.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(ada.locator(f"li.person[data-id='{bob_id}']")).to_have_attribute("data-state", "away")
    sent = [f"while away {i}" for i in range(1, 7)]  # more than the 4 the hub keeps for Bob
    for text in sent:
        say(ada, text)
    expect(ada.locator("li.msg .text")).to_have_text(["before", *sent])

    bob.context.set_offline(False)
    expect(bob.locator("#conn")).to_have_attribute("data-state", "open")
    expect(bob.locator("li.notice.gap")).to_have_count(1)
    expect(bob.locator("li.notice.gap")).to_contain_text("could not be delivered")
    expect(bob.locator("li.msg .text")).to_have_text(["before", *sent])  # from the history
    assert bob.evaluate("window.chat.conn.gaps[0].reason") == "overflow"


def test_page_shows_a_clear_state_when_the_server_goes_away(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    chat = server("examples/chat/app.py", "--grace", GRACE)
    ada = join(new_page, chat.url, "Ada")
    chat.kill()
    expect(ada.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(ada.locator("#conn-text")).to_contain_text("Reconnecting")
    expect(ada.locator("#banner")).to_be_visible()
    expect(ada.locator("#banner")).to_contain_text("Connection lost")

    # It comes back by itself when the server does (a first join: the old hub is gone).
    chat.start()
    expect(ada.locator("#conn")).to_have_attribute("data-state", "open", timeout=20_000)
    expect(ada.locator("#banner")).to_be_hidden()
    say(ada, "still here")
    expect(ada.locator("li.msg .text")).to_have_text(["still here"])


def test_a_server_restart_is_shown_and_a_message_typed_meanwhile_is_kept_and_sent(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    chat = server("examples/chat/app.py", "--grace", GRACE)
    ada = join(new_page, chat.url, "Ada")
    say(ada, "before the restart")
    expect(ada.locator("li.msg .text")).to_have_text(["before the restart"])
    chat.kill()
    expect(ada.locator("#conn")).to_have_attribute("data-state", "reconnecting")

    # Typed while the server is down: on screen at once, marked as on its way.
    say(ada, "typed while down")
    expect(ada.locator("li.msg.pending .text")).to_have_text(["typed while down"])
    expect(ada.locator("li.msg.pending .sending")).to_have_text("sending…")

    chat.start()  # a new server on the same port: its history is empty
    expect(ada.locator("#conn")).to_have_attribute("data-state", "open", timeout=20_000)
    expect(ada.locator("li.notice.restart")).to_contain_text("The server restarted")
    # The old conversation is gone (and said to be); the pending message went out, once.
    expect(ada.locator("li.msg .text")).to_have_text(["typed while down"])
    expect(ada.locator("li.msg.pending")).to_have_count(0)
    bob = join(new_page, chat.url, "Bob")
    expect(bob.locator("li.msg .text")).to_have_text(["typed while down"])
    expect(bob.locator("li.notice.restart")).to_have_count(0)  # Bob saw nothing old


def test_usable_on_a_phone_390px_wide(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    chat = server("examples/chat/app.py", "--grace", GRACE)
    join(new_page, chat.url, "Ada")
    page = new_page(viewport=(390, 844))
    page.goto(f"{chat.url}/r/lobby")
    page.fill("#name", "Bob")
    page.click("#name-dialog button")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    # The room switcher, the online count and the way to the people list are all on screen.
    for selector in ("#switch-room", "#count", "#people-toggle", "#text", "#send", "#conn"):
        expect(page.locator(selector)).to_be_visible()
        expect(page.locator(selector)).to_be_in_viewport()
    expect(page.locator("#count")).to_have_text("2")
    page.click("#people-toggle")
    expect(page.locator("li.person")).to_have_count(2)
    for person in page.locator("li.person").all():
        expect(person).to_be_visible()
    say(page, "a message from a phone, long enough to wrap onto a second line or more")
    expect(page.locator("li.msg.mine .text")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.click("#people-toggle")  # folds away again
    expect(page.locator("li.person").first).to_be_hidden()
