"""The words people read, where more than one place says them: the notice
after each action, what a broken mail's defects mean to a clerk, and a
server that could not be reached. Messages of a refused action stay beside
the check that refuses it (they name its own field)."""

from __future__ import annotations

# After an action, the notice on the page it leads to (``?notice=KEY``).
NOTICES = {
    "dismissed": "対象外にしました。",
    "undismissed": "対象外を取り消し、未処理に戻しました。",
    "cancelled": "収受を取り消しました。番号は欠番として残ります。",
    "amended": "収受の内容を訂正しました。文書管理システムには訂正として届きます。",
    "saved": "保存しました。",
    "classification_added": "文書分類を追加しました。収受登録の文書分類に選べます。",
    "section_added": "課を追加しました。文書記号を確かめ、収受用アドレスと職員の所属に選べます。",
    "address_added": "収受用アドレスを追加しました。MTA の設定に反映してください（「MTA 設定」）。",
    "address_deleted": "収受用アドレスを削除しました。MTA の設定からも外してください（「MTA 設定」）。",
    "address_enabled": "収受用アドレスを有効にしました。この宛先のメールを受け付けます。",
    "address_disabled": "収受用アドレスを無効にしました。この宛先のメールは受け付けず、保存済みのメールはそのまま残ります。",
    "logged_out": "ログアウトしました。",
    "unlocked": "ログインの停止を解除しました。本人に伝えてください。",
}


# What the standard library's defect classes mean to a clerk; each note ends
# with where to look (see _describe_defects).
DEFECT_NOTES = {
    "CloseBoundaryNotFoundDefect": "メールの終わりの区切りが見つからなかったため、最後の部分は推定で読み取りました",
    "StartBoundaryNotFoundDefect": "本文と添付ファイルの区切りが見つかりませんでした",
    "NoBoundaryInMultipartDefect": "本文と添付ファイルの区切りが指定されていませんでした",
    "MultipartInvariantViolationDefect": "添付ファイル付きの形式なのに、本文と添付ファイルに分かれていませんでした",
    "InvalidBase64CharactersDefect": "添付ファイルの符号化が壊れていたため、一部を復元できませんでした",
    "InvalidBase64PaddingDefect": "添付ファイルの符号化が途中で切れていたため、一部を復元できませんでした",
    "InvalidBase64LengthDefect": "添付ファイルの符号化が途中で切れていたため、一部を復元できませんでした",
    "InvalidMultipartContentTransferEncodingDefect": "添付ファイル付きメールの符号化の指定が正しくありませんでした",
    "MissingHeaderBodySeparatorDefect": "ヘッダーと本文の間の空行がありませんでした",
    "FirstHeaderLineIsContinuationDefect": "ヘッダーの最初の行が正しくありませんでした",
    "MisplacedEnvelopeHeaderDefect": "ヘッダーの途中に配送用の行が混じっていました",
    "UndecodableBytesDefect": "読み取れない文字が含まれていました",
    "InvalidDateDefect": "送信日時の書き方が正しくありませんでした",
}
DEFECT_FALLBACK = "メールの形式に不備がありました"
DEFECT_WHERE = "（原文は「ソースを表示」から確認できます）"


def cannot_connect(server: str, where: str, next_step: str) -> str:
    """「中継サーバー（127.0.0.1:2525）に接続できませんでした。…」: the server
    by its role, where it was looked for, what to do; never an errno."""
    return f"{server}（{where}）に接続できませんでした。{next_step}"
