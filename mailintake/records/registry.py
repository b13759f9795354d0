"""収受登録: registering mails as received documents with gapless receipt
numbers, dismissing (対象外) and cancelling (取消), and the 収受簿.

Receipt numbers count per 文書記号 and fiscal year (April to March, Japan
time, by 収受日). The counter row is incremented inside the registering
transaction: concurrent registrations queue on that row (PostgreSQL's row
lock, SQLite's single writer), and a registration that fails rolls its
number back with it, so numbers have no gaps and are never reused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from .. import jpdates
from ..errors import BadRequest, Conflict, NotFound
from ..models import (
    Attachment,
    Message,
    MessageStatus,
    Registration,
    RegistrationStatus,
    User,
    utcnow,
)
from ..people.accounts import UserInfo
from ..people.visibility import visible_message
from . import audit, classifications, events, senders
from .classifications import ClassificationChoice
from .messages import contains_text
from .registrations import (
    RECEIPT_METHODS,
    Amendment,
    RegistrationInfo,
    RegistrationRequest,
    TakenMail,
    describe,
    format_receipt_number,
    next_number,
    section_for,
    with_default_retention,
)

Clock = Callable[[], dt.datetime]


class Registry:
    def __init__(
        self,
        engine: Engine,
        *,
        number_format: str,
        retention_periods: Sequence[str],
        clock: Clock = utcnow,
    ) -> None:
        self.engine = engine
        self.number_format = number_format
        self.retention_periods = tuple(retention_periods)
        self.clock = clock
        format_receipt_number(number_format, "記号", 2026, 1)  # fail at start, not at the first registration

    # -- registering -------------------------------------------------------------

    def register(
        self, user: UserInfo, requests: Sequence[RegistrationRequest], client_address: str = ""
    ) -> list[RegistrationInfo]:
        """Register every request or none; numbers follow the given order."""
        created, taken = self.register_available(user, requests, client_address, all_or_nothing=True)
        assert not taken
        return created

    def register_available(
        self,
        user: UserInfo,
        requests: Sequence[RegistrationRequest],
        client_address: str = "",
        all_or_nothing: bool = False,
    ) -> tuple[list[RegistrationInfo], list[TakenMail]]:
        """Register the requests whose mail is still 未処理, numbered in the
        given order, and name the ones another clerk registered or
        dismissed meanwhile (two tabs, two clerks): those are skipped."""
        if not requests:
            raise BadRequest("収受するメールを選んでください")
        if len({r.message_id for r in requests}) != len(requests):
            raise BadRequest("同じメールが二度選ばれています")
        with Session(self.engine) as session:
            requests = [with_default_retention(session, request) for request in requests]
        for request in requests:
            self._validate(request)
        now = self.clock()
        taken: list[TakenMail] = []
        with Session(self.engine) as session, session.begin():
            created: list[Registration] = []
            for request in requests:
                # First write of the transaction: claims the message, so two
                # clerks cannot register the same mail twice.
                claimed = session.execute(
                    update(Message)
                    .where(Message.id == request.message_id, Message.status == MessageStatus.NEW)
                    .values(status=MessageStatus.REGISTERED)
                )
                message = visible_message(session, user, request.message_id)
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    if all_or_nothing:
                        raise Conflict(f"「{message.subject}」は既に収受登録されたか対象外になっています")
                    taken.append(TakenMail(message.id, message.subject, message.status))
                    continue
                created.append(self._numbered(session, user, message, request, now, client_address))
            if created:
                events.record(session, [(registration, "registered") for registration in created], now)
            ids = [registration.id for registration in created]
        return [self.get(user, registration_id) for registration_id in ids], taken

    def sender_guesses(self, mails: Sequence[tuple[int, str, str]]) -> dict[int, senders.SenderGuess]:
        """Per mail (id, from address, display name): the 組織名 and 氏名 to
        prefill, from the sender directory."""
        with Session(self.engine) as session:
            return {mail_id: senders.guess(session, address, name) for mail_id, address, name in mails}

    def _numbered(
        self,
        session: Session,
        user: UserInfo,
        message: Message,
        request: RegistrationRequest,
        now: dt.datetime,
        client_address: str,
    ) -> Registration:
        """The registration of a claimed mail, with the section's next number."""
        section = section_for(session, user, message, request.section_id)
        fiscal_year = jpdates.fiscal_year(request.received_on)
        number = next_number(session, section.symbol, fiscal_year)
        registration = Registration(
            message_id=message.id,
            section_id=section.id,
            symbol=section.symbol,
            fiscal_year=fiscal_year,
            number=number,
            receipt_number=format_receipt_number(self.number_format, section.symbol, fiscal_year, number),
            received_on=request.received_on,
            attachment_ids=_document_attachments(session, message.id, request.attachment_ids),
            registered_by=user.id,
            registered_at=now,
        )
        describe(session, registration, request)
        senders.remember(session, message.from_address, registration.sender_org, registration.sender)
        session.add(registration)
        session.flush()
        audit.record(
            session,
            user,
            "register",
            message_id=message.id,
            section_id=section.id,
            detail=registration.receipt_number,
            client_address=client_address,
            at=now,
        )
        return registration

    def _validate(self, request: RegistrationRequest | Amendment, received_on: dt.date | None = None) -> None:
        if not request.subject.strip():
            raise BadRequest("件名を入力してください")
        if not request.sender.strip():
            raise BadRequest("発信者を入力してください")
        if request.retention not in self.retention_periods:
            raise BadRequest(f"保存期間は {'・'.join(self.retention_periods)} から選んでください")
        if len(request.sender_reference.strip()) > 200:
            raise BadRequest("先方文書番号は200文字以内で入力してください")
        if request.receipt_method not in RECEIPT_METHODS:
            raise BadRequest(f"受付方法は {'・'.join(RECEIPT_METHODS)} から選んでください")
        if isinstance(request, RegistrationRequest):
            received_on = request.received_on
            if received_on > jpdates.jst_date(self.clock()):
                raise BadRequest("収受日に未来の日付は指定できません")
        if request.reply_due is not None and received_on is not None and request.reply_due < received_on:
            raise BadRequest("回答期限が収受日より前になっています")
        if request.document_date is not None and received_on is not None and request.document_date > received_on:
            raise BadRequest("文書日付が収受日より後になっています（文書に書かれた日付を入力してください）")

    def amend(
        self, user: UserInfo, registration_id: int, amendment: Amendment, client_address: str = ""
    ) -> RegistrationInfo:
        """訂正 by a section administrator: the document system receives an
        ``amended`` event with the corrected record."""
        if not user.is_section_admin:
            raise NotFound(f"no registration {registration_id}")
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            registration = self._visible_registration(session, user, registration_id)
            if registration.status == RegistrationStatus.CANCELLED:
                raise Conflict(f"{registration.receipt_number} は取り消されているため訂正できません")
            self._validate(amendment, registration.received_on)
            describe(session, registration, amendment)
            audit.record(
                session,
                user,
                "amend",
                message_id=registration.message_id,
                section_id=registration.section_id,
                detail=registration.receipt_number,
                client_address=client_address,
                at=now,
            )
            events.record(session, [(registration, "amended")], now)
        return self.get(user, registration_id)

    def cancel(self, user: UserInfo, registration_id: int, reason: str, client_address: str = "") -> RegistrationInfo:
        """取消: the number stays taken; the mail becomes 未処理 again."""
        if not user.is_section_admin:
            raise NotFound(f"no registration {registration_id}")
        if not reason.strip():
            raise BadRequest("取消の理由を入力してください")
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            registration = self._visible_registration(session, user, registration_id)
            if registration.status == RegistrationStatus.CANCELLED:
                raise Conflict(f"{registration.receipt_number} は既に取り消されています")
            registration.status = RegistrationStatus.CANCELLED
            registration.cancelled_by = user.id
            registration.cancelled_at = now
            registration.cancel_reason = reason.strip()
            session.execute(
                update(Message)
                .where(Message.id == registration.message_id, Message.status == MessageStatus.REGISTERED)
                .values(status=MessageStatus.NEW)
            )
            audit.record(
                session,
                user,
                "cancel",
                message_id=registration.message_id,
                section_id=registration.section_id,
                detail=f"{registration.receipt_number}: {reason.strip()}",
                client_address=client_address,
                at=now,
            )
            events.record(session, [(registration, "cancelled")], now)
        return self.get(user, registration_id)

    # -- 対象外 ----------------------------------------------------------------------

    def dismiss(self, user: UserInfo, message_id: int, reason: str, client_address: str = "") -> None:
        if not reason.strip():
            raise BadRequest("対象外にする理由を入力してください")
        self._set_status(
            user, message_id, MessageStatus.NEW, MessageStatus.DISMISSED, reason.strip(), "dismiss", client_address
        )

    def undismiss(self, user: UserInfo, message_id: int, client_address: str = "") -> None:
        self._set_status(
            user, message_id, MessageStatus.DISMISSED, MessageStatus.NEW, None, "undismiss", client_address
        )

    def _set_status(
        self,
        user: UserInfo,
        message_id: int,
        before: str,
        after: str,
        reason: str | None,
        action: str,
        client_address: str,
    ) -> None:
        with Session(self.engine) as session, session.begin():
            changed = session.execute(
                update(Message)
                .where(Message.id == message_id, Message.status == before)
                .values(status=after, dismiss_reason=reason)
            )
            message = visible_message(session, user, message_id)
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict("このメールの状態は既に変わっています。一覧を更新してください")
            audit.record(
                session,
                user,
                action,
                message_id=message_id,
                section_id=message.address.section_id,
                detail=reason or "",
                client_address=client_address,
                at=self.clock(),
            )

    # -- reading -----------------------------------------------------------------

    def get(self, user: UserInfo, registration_id: int) -> RegistrationInfo:
        with Session(self.engine) as session:
            return _info(session, self._visible_registration(session, user, registration_id))

    def for_message(self, user: UserInfo, message_id: int) -> list[RegistrationInfo]:
        with Session(self.engine) as session:
            visible_message(session, user, message_id)
            rows = session.scalars(
                select(Registration).where(Registration.message_id == message_id).order_by(Registration.id)
            ).all()
            return [_info(session, r) for r in rows]

    def book(
        self, user: UserInfo, section_id: int, fiscal_year: int, q: str = "", reply_due_only: bool = False
    ) -> list[RegistrationInfo]:
        """The 収受簿 of one section and fiscal year, in number order; ``q``
        finds a word in 収受番号, 件名, 発信者, 先方文書番号 or 備考."""
        if not user.is_system_admin and section_id not in {s.id for s in user.sections}:
            raise NotFound(f"no section {section_id}")
        stmt = (
            select(Registration)
            .where(Registration.section_id == section_id, Registration.fiscal_year == fiscal_year)
            .order_by(Registration.symbol, Registration.number)
        )
        if q.strip():
            columns = [
                Registration.receipt_number,
                Registration.subject,
                Registration.sender,
                Registration.sender_reference,
                Registration.remarks,
            ]
            stmt = stmt.where(contains_text(columns, q.strip()))
        if reply_due_only:
            stmt = stmt.where(Registration.reply_due.is_not(None))
        with Session(self.engine) as session:
            return [_info(session, r) for r in session.scalars(stmt).all()]

    def awaiting_handoff(self, user: UserInfo, section_id: int, older_than: dt.timedelta) -> list[RegistrationInfo]:
        """Registrations of the section whose newest event the document
        system has not acknowledged within ``older_than``."""
        if not user.is_system_admin and section_id not in {s.id for s in user.sections}:
            raise NotFound(f"no section {section_id}")
        with Session(self.engine) as session:
            rows = events.awaiting_ack(session, self.clock() - older_than, [section_id])
            return [_info(session, r) for r in rows]

    def classification_choices(self) -> list[ClassificationChoice]:
        return classifications.choices(self.engine)

    def add_classification(self, name: str, parent_id: int | None = None, code: str = "", retention: str = "") -> int:
        return classifications.add(self.engine, name, parent_id, code, retention, self.retention_periods)

    def describe_classification(self, classification_id: int, code: str, retention: str) -> None:
        classifications.describe(self.engine, classification_id, code, retention, self.retention_periods)

    def _visible_registration(self, session: Session, user: UserInfo, registration_id: int) -> Registration:
        registration = session.get(Registration, registration_id)
        if registration is None or (
            not user.is_system_admin and registration.section_id not in {s.id for s in user.sections}
        ):
            raise NotFound(f"no registration {registration_id}")
        return registration


def _document_attachments(session: Session, message_id: int, wanted: Sequence[int]) -> list[int]:
    if not wanted:
        return []
    found = set(
        session.scalars(select(Attachment.id).where(Attachment.message_id == message_id, Attachment.id.in_(wanted)))
    )
    if found != set(wanted):
        raise BadRequest("選ばれた添付ファイルがこのメールのものではありません")
    return sorted(found)


def _info(session: Session, registration: Registration) -> RegistrationInfo:
    registered_by = session.get(User, registration.registered_by)
    return RegistrationInfo(
        id=registration.id,
        message_id=registration.message_id,
        receipt_number=registration.receipt_number,
        number=registration.number,
        fiscal_year=registration.fiscal_year,
        symbol=registration.symbol,
        section=registration.section.name,
        received_on=registration.received_on,
        subject=registration.subject,
        sender=registration.sender,
        classification=registration.classification_path,
        retention=registration.retention,
        remarks=registration.remarks,
        status=registration.status,
        registered_by=(registered_by.display_name or registered_by.username) if registered_by else "",
        registered_at=registration.registered_at,
        cancelled_at=registration.cancelled_at,
        cancel_reason=registration.cancel_reason,
        section_id=registration.section_id,
        classification_id=registration.classification_id,
        sender_reference=registration.sender_reference,
        reply_due=registration.reply_due,
        sender_org=registration.sender_org,
        document_date=registration.document_date,
        receipt_method=registration.receipt_method,
        reply_required=registration.reply_required,
        handed_off_at=registration.acked_at if registration.acked_seq else None,
        handoff_pending=events.pending(registration),
    )
