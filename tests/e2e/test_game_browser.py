"""The game example in headless Chromium: a full game to a win, drop and return, opponent left."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import e2e_support
from e2e_support import Server
from playwright.sync_api import expect

browser = e2e_support.browser
new_page = e2e_support.new_page
server = e2e_support.server


def open_game(new_page: Callable[..., Any], url: str) -> Any:
    page = new_page(viewport=(800, 760))
    page.goto(url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    return page


def move(page: Any, cell: int) -> None:
    expect(page.locator("#status")).to_contain_text("Your turn")
    page.click(f'.cell[data-cell="{cell}"]')


def test_a_full_game_to_a_win_with_a_drop_and_return(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    game = server("examples/game/app.py", "--grace", "15")
    x = open_game(new_page, game.url + "/")  # redirected to a new game
    expect(x.locator("#status")).to_have_attribute("data-status", "waiting")
    o = open_game(new_page, x.url)
    expect(x.locator("#status")).to_have_text("Your turn")
    expect(o.locator("#status")).to_have_text("Opponent's turn")
    expect(x.locator("#player-X .pname")).to_contain_text("(you)")
    expect(o.locator("#player-O .pname")).to_contain_text("(you)")

    move(x, 0)
    move(o, 3)
    expect(o.locator('.cell[data-cell="0"]')).to_have_text("X")
    # The server has O's move (X sees it) before O's network goes: Chromium's offline
    # emulation may drop a frame still in the browser's send buffer.
    expect(x.locator('.cell[data-cell="3"]')).to_have_text("O")

    # O drops (network) inside the grace period: X sees it, O comes back to the same seat.
    o.context.set_offline(True)
    expect(o.locator("#status")).to_have_attribute("data-status", "disconnected")
    expect(x.locator("#player-O")).to_have_attribute("data-online", "false")
    expect(x.locator("#status")).to_contain_text("opponent disconnected")
    move(x, 1)
    o.context.set_offline(False)
    expect(o.locator("#conn")).to_have_attribute("data-state", "open")
    expect(x.locator("#player-O")).to_have_attribute("data-online", "true")
    expect(o.locator('.cell[data-cell="1"]')).to_have_text("X")  # the move made meanwhile

    # O reloads: still the same participant, same game.
    o.reload()
    expect(o.locator("#player-O .pname")).to_contain_text("(you)")
    move(o, 4)
    move(x, 2)

    expect(x.locator("#status")).to_have_text("You win!")
    expect(o.locator("#status")).to_have_text("You lose.")
    expect(x.locator(".cell.win")).to_have_count(3)
    expect(o.locator(".cell.win")).to_have_count(3)
    expect(x.locator("#rematch")).to_be_visible()

    # A rematch: a fresh board, O starts.
    x.click("#rematch")
    expect(o.locator("#status")).to_have_text("Your turn")
    expect(x.locator(".cell[data-mark='X']")).to_have_count(0)


def test_opponent_who_does_not_return_leaves_a_clear_state_and_the_bot_steps_in(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    game = server("examples/game/app.py", "--grace", "1.5")
    x = open_game(new_page, game.url + "/")
    o = open_game(new_page, x.url)
    move(x, 4)
    o.context.close()  # gone for good
    expect(x.locator("#status")).to_have_text("Opponent left the game.")
    expect(x.locator("#status")).to_have_attribute("data-status", "abandoned")

    # The bot (the Python client) takes the free seat and a new round starts.
    expect(x.locator("#bot")).to_be_visible()
    x.click("#bot")
    expect(x.locator("#player-O .pname")).to_have_text("Bot")
    for k in range(1, 6):
        # Wait for the bot's answer (as many O as X), or the end of the game.
        x.wait_for_function(
            """() => { const s = window.game.state;
                       const n = (m) => s.board.filter((c) => c === m).length;
                       return s.status !== "playing" || (s.turn === "X" && n("X") === n("O")); }"""
        )
        if x.evaluate("window.game.state.status") != "playing":
            break
        x.locator(".cell:not([disabled])").first.click()
        x.wait_for_function(
            "k => window.game.state.board.filter((c) => c === 'X').length >= k", arg=k
        )
    expect(x.locator("#status")).to_have_attribute("data-status", "lost")  # the bot is good


def test_a_server_restart_shows_the_new_board_and_moves_work(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    game = server("examples/game/app.py", "--grace", "15")
    x = open_game(new_page, game.url + "/")
    o = open_game(new_page, x.url)
    move(x, 0)
    move(o, 4)
    expect(x.locator('.cell[data-cell="4"]')).to_have_text("O")
    game.kill()
    expect(x.locator("#conn")).not_to_have_attribute("data-state", "open")
    game.start()  # same port, a new hub: a new game under the same name, versions from zero
    for page in (x, o):
        expect(page.locator("#conn")).to_have_attribute("data-state", "open", timeout=20_000)
        expect(page.locator("#notice")).to_contain_text("server restarted")
        expect(page.locator(".cell[data-mark='X']")).to_have_count(0)
        expect(page.locator(".cell[data-mark='O']")).to_have_count(0)
    # Whoever got X plays, and the move lands on both boards (no click refused).
    first = x if x.evaluate("window.game.state.players.X.id") == x.evaluate("window.game.me") else o
    other = o if first is x else x
    move(first, 8)
    expect(other.locator('.cell[data-cell="8"]')).to_have_text("X")
    expect(first.locator("#error")).to_be_hidden()
    expect(first.locator("#notice")).to_be_hidden()  # old news once the new game is on


def test_usable_on_a_phone_when_the_opponent_drops(
    server: Callable[..., Server], new_page: Callable[..., Any]
) -> None:
    game = server("examples/game/app.py", "--grace", "15")
    x = new_page(viewport=(390, 844))
    x.goto(game.url + "/")
    expect(x.locator("#conn")).to_have_attribute("data-state", "open")
    o = new_page(viewport=(390, 844))
    o.goto(x.url)
    expect(o.locator("#conn")).to_have_attribute("data-state", "open")
    move(x, 4)
    o.context.set_offline(True)
    expect(x.locator("#player-O")).to_have_attribute("data-online", "false")
    expect(x.locator("#player-O .pstate")).to_have_text("reconnecting…")
    for selector in ("#player-X", "#player-O", "#status", ".cell >> nth=8", "#copy"):
        expect(x.locator(selector)).to_be_in_viewport()
    assert x.evaluate("document.documentElement.scrollWidth") <= 390
    # No card is wider than its box, nor reaches past the card around it.
    fits = x.evaluate(
        """() => [...document.querySelectorAll('.player')].every((el) =>
             el.scrollWidth <= el.clientWidth &&
             el.getBoundingClientRect().right <= document.querySelector('.card')
               .getBoundingClientRect().right)"""
    )
    assert fits
