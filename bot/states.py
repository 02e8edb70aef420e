"""FSM states, named for what they wait for."""

from aiogram.fsm.state import State, StatesGroup


class ConnectMailbox(StatesGroup):
    choosing_service = State()
    waiting_email = State()
    waiting_login = State()
    reviewing_servers = State()
    waiting_imap_host = State()
    waiting_imap_port = State()
    waiting_smtp_host = State()
    waiting_smtp_port = State()
    waiting_password = State()
    choosing_fix = State()
    waiting_signature = State()
    choosing_alerts = State()
    choosing_mobile = State()
    choosing_processes = State()
    confirming = State()


class EditMailbox(StatesGroup):
    waiting_signature = State()


class ReconnectMailbox(StatesGroup):
    choosing = State()
    waiting_password = State()
    waiting_login = State()
    waiting_imap_host = State()
    waiting_imap_port = State()
    waiting_smtp_host = State()
    waiting_smtp_port = State()


class RuleInput(StatesGroup):
    waiting_value = State()  # the address, domain or word of a new alert rule


class QuietInput(StatesGroup):
    waiting_zone = State()
    waiting_window = State()


class SearchMail(StatesGroup):
    waiting_words = State()


class ComposeLetter(StatesGroup):
    """An answer or a forward being written (the draft is in the FSM data, services.compose)."""

    waiting_text = State()
    waiting_recipients = State()
    reviewing = State()
